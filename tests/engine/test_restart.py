"""Restarts: changed inputs rerun exactly what they affect; failed-only resets; dry runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpcflow.models.job import JobIn
from tests.engine.helpers import Api, run_to_completion


def build(api: Api, tmp_path: Path) -> dict[str, Path]:
    """in1 -> a -> b -> d <- c <- in2;  in3 -> e (independent);  c also reads user data."""
    paths = {n: tmp_path / f"{n}.txt" for n in ("in1", "in2", "in3")}
    refs = {}
    for name, path in paths.items():
        path.write_text(name)
        refs[name] = api.file(name, str(path), st_mtime=path.stat().st_mtime)
    for name in ("fa", "fb", "fc"):
        refs[name] = api.file(name, str(tmp_path / f"{name}.out"))
    refs["ud"] = api.user_data("ud", {"v": 1})
    api.job("a", input_files=[refs["in1"]], output_files=[refs["fa"]])
    api.job("b", input_files=[refs["fa"]], output_files=[refs["fb"]])
    api.job("c", input_files=[refs["in2"]], output_files=[refs["fc"]], input_user_data=[refs["ud"]])
    api.job("d", input_files=[refs["fb"], refs["fc"]])
    api.job("e", input_files=[refs["in3"]])
    api.initialize()
    run_to_completion(api, api.node())
    assert set(api.statuses().values()) == {"done"}
    return paths


def rerun(api: Api, expected: set[str]) -> None:
    """Re-initialize, run again, and check exactly `expected` ran."""
    api.initialize(only_uninitialized=True)
    ran = run_to_completion(api, api.node("again"))
    assert set(ran) == expected
    assert api.get("/is_complete")["is_complete"] is True


def test_touching_one_input_reruns_its_consumers_and_downstream(
    client: Any, workflow: str, tmp_path: Path
) -> None:
    api = Api(client, workflow)
    paths = build(api, tmp_path)
    assert api.post("/process_changed_job_inputs", dry_run=True) == {"reinitialized_jobs": []}
    st = paths["in2"].stat()
    os.utime(paths["in2"], (st.st_atime, st.st_mtime + 10))
    keys = {n: j["_key"] for n, j in api.jobs().items()}
    dry = api.post("/process_changed_job_inputs", dry_run=True)["reinitialized_jobs"]
    assert sorted(dry) == sorted([keys["c"], keys["d"]])
    assert set(api.statuses().values()) == {"done"}  # the dry run wrote nothing
    real = api.post("/process_changed_job_inputs")["reinitialized_jobs"]
    assert real == dry
    assert api.statuses() == {
        "a": "done",
        "b": "done",
        "c": "uninitialized",
        "d": "uninitialized",
        "e": "done",
    }
    in2 = api.get("/files", name="in2")["items"][0]
    assert in2["st_mtime"] == paths["in2"].stat().st_mtime and in2["_rev"] == "2"
    rerun(api, {"c", "d"})
    assert api.post("/process_changed_job_inputs", dry_run=True) == {"reinitialized_jobs": []}


def test_changed_user_data_and_command_rerun_their_jobs(
    client: Any, workflow: str, tmp_path: Path
) -> None:
    api = Api(client, workflow)
    build(api, tmp_path)
    ud = api.get("/user_data", name="ud")["items"][0]
    api.put(f"/user_data/{ud['_key']}", {**ud, "data": {"v": 2}})
    job_b = api.jobs()["b"]
    body = {k: v for k, v in job_b.items() if k in JobIn.model_fields or k == "_rev"}
    body.pop("status", None)
    api.put(f"/jobs/{job_b['_key']}", {**body, "command": "run b --better"})
    keys = {n: j["_key"] for n, j in api.jobs().items()}
    dry = api.post("/process_changed_job_inputs", dry_run=True)["reinitialized_jobs"]
    assert sorted(dry) == sorted(keys[n] for n in ("b", "c", "d"))
    assert api.post("/process_changed_job_inputs")["reinitialized_jobs"] == dry
    rerun(api, {"b", "c", "d"})


def test_reset_failed_only_reruns_failures_and_their_downstream(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    a = api.job("a")
    b = api.job("b", blocked_by=[a["_id"]])
    api.job("c", blocked_by=[b["_id"]])
    api.job("ok")
    api.initialize()
    run_to_completion(api, api.node(), fail={"a"})
    assert api.statuses() == {"a": "done", "b": "canceled", "c": "canceled", "ok": "done"}
    api.post("/reset_job_status", failed_only=True)
    assert api.statuses() == {
        "a": "uninitialized",
        "b": "uninitialized",
        "c": "uninitialized",
        "ok": "done",
    }
    rerun(api, {"a", "b", "c"})


def test_restart_with_new_run_id_rejects_old_runner(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    api.job("a")
    api.initialize()
    node = api.node()
    [job] = api.claim()
    started = api.start(job, node)
    status = api.get("/status")
    api.put("/status", {**status, "run_id": status["run_id"] + 1})
    api.initialize()  # the torc client bumps run_id, then re-initializes
    assert api.statuses() == {"a": "ready"}
    out = api.complete(started, node, run_id=status["run_id"], expect=409)
    assert "stale" in out["errorMessage"]
