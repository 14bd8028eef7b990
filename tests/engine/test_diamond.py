"""The diamond workflow, driven through HTTP by a scripted client, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.engine.helpers import Api, run_to_completion


def build_diamond(api: Api) -> None:
    """torc's diamond: preprocess -> (work1, work2) -> postprocess, linked only by files."""
    f = {
        n: api.file(n, f"/nonexistent/{n}.json")
        for n in ("inputs", "file1", "file2", "file3", "file4", "file5")
    }
    small = api.rr("small", num_cpus=1, memory="1g", runtime="P0DT5M")
    medium = api.rr("medium", num_cpus=4, memory="8g", runtime="P0DT10M")
    large = api.rr("large", num_cpus=8, memory="16g", runtime="P0DT20M")
    my_val = api.user_data("my_val", {"key1": "val1"})
    api.job(
        "preprocess",
        input_files=[f["inputs"]],
        output_files=[f["file1"], f["file2"]],
        resource_requirements=small,
    )
    api.job(
        "work1",
        input_files=[f["file1"]],
        output_files=[f["file3"]],
        input_user_data=[my_val],
        resource_requirements=medium,
    )
    api.job(
        "work2", input_files=[f["file2"]], output_files=[f["file4"]], resource_requirements=large
    )
    api.job(
        "postprocess",
        input_files=[f["file3"], f["file4"]],
        output_files=[f["file5"]],
        resource_requirements=small,
    )


def test_diamond_runs_in_dependency_order(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    build_diamond(api)
    assert api.get("/is_complete")["is_complete"] is False
    api.initialize()
    assert api.statuses() == {
        "preprocess": "ready",
        "work1": "blocked",
        "work2": "blocked",
        "postprocess": "blocked",
    }
    jobs = api.jobs()
    assert jobs["postprocess"]["blocked_by"] == sorted(
        [f"jobs/{jobs['work1']['_key']}", f"jobs/{jobs['work2']['_key']}"]
    )
    node = api.node()
    order = run_to_completion(api, node)
    assert order[0] == "preprocess" and order[-1] == "postprocess"
    assert set(order) == {"preprocess", "work1", "work2", "postprocess"}
    assert set(api.statuses().values()) == {"done"}
    done = api.get("/is_complete")
    assert done == {
        "is_canceled": False,
        "is_complete": True,
        "needs_to_run_completion_script": False,
    }
    results = api.get("/results")["items"]
    assert len(results) == 4 and {r["return_code"] for r in results} == {0}


def test_diamond_failure_cancels_downstream(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    build_diamond(api)
    api.initialize()
    node = api.node()
    order = run_to_completion(api, node, fail={"work1"})
    assert "postprocess" not in order
    assert api.statuses()["postprocess"] == "canceled"
    assert api.get("/is_complete")["is_complete"] is True
    events = api.get("/events", category="job")["items"]
    assert any(e.get("type") == "failed" for e in events)


def test_claim_respects_resources_and_records_node(
    client: Any, workflow: str, backend: Any
) -> None:
    api = Api(client, workflow)
    build_diamond(api)
    api.initialize()
    node = api.node()
    # 0.5 GiB cannot hold preprocess (1g); a 4-minute node cannot fit its 5-minute runtime.
    assert api.claim({"num_cpus": 4, "memory_gb": 0.5, "num_gpus": 0, "num_nodes": 1}) == []
    short = {"num_cpus": 4, "memory_gb": 2, "num_gpus": 0, "num_nodes": 1, "time_limit": "P0DT4M"}
    out = api.post("/prepare_jobs_for_submission", short)
    assert out["jobs"] == [] and "runtime_seconds <= 240" in out["reason"]
    [job] = api.claim({**short, "time_limit": "PT10M"}, compute_node_key=node)
    assert job["name"] == "preprocess" and job["status"] == "submitted_pending"
    row = api.get(f"/jobs/{job['_key']}")
    assert row["status"] == "submitted_pending" and row["_rev"] == job["_rev"] == "3"
    with backend.connect() as conn:
        node_id, claimed_at = conn.execute(
            text("SELECT compute_node_id, claimed_at FROM jobs WHERE id = :id"),
            {"id": int(job["_key"])},
        ).one()
    assert node_id == int(node) and claimed_at > 1.6e9
