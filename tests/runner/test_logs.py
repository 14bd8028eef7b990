"""Log tails: what the runner uploads, and the job_logs API on both databases."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from hpcflow.runner import processes as proc
from hpcflow.runner.logs import LogBuffer, log_record, tail
from tests.conftest import row_counts


def test_tail_keeps_the_end(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"0123456789")
    assert tail(path, 4) == ("6789", 10, True)
    assert tail(path, 100) == ("0123456789", 10, False)
    assert tail(tmp_path / "missing", 4) == ("", 0, False)
    path.write_bytes(b"\xff\xfeok")
    assert tail(path, 10)[0].endswith("ok")  # undecodable bytes do not break the upload


def _run(tmp_path: Path, out: bytes, err: bytes) -> proc.Run:
    p = subprocess.Popen(["true"])
    p.wait()
    (tmp_path / "o").write_bytes(out)
    (tmp_path / "e").write_bytes(err)
    return proc.Run(
        job={"_key": "5"},
        run_id=1,
        proc=p,
        out_path=str(tmp_path / "o"),
        err_path=str(tmp_path / "e"),
        started=0.0,
        started_mono=0.0,
    )


def test_log_record_and_buffer(tmp_path: Path) -> None:
    run = _run(tmp_path, b"hello\n" * 100, b"")
    rec = log_record(run, 12, compute_node_key="2", hostname="h")
    assert rec is not None
    assert (rec["job_key"], rec["run_id"], rec["stdout"], rec["stderr"]) == (
        "5",
        1,
        "hello\nhello\n",
        "",
    )
    assert rec["stdout_bytes"] == 600 and rec["truncated"] is True
    empty = tmp_path / "empty"
    empty.mkdir()
    assert log_record(_run(empty, b"", b""), 12) is None
    buf = LogBuffer(max_bytes=12, batch=2)
    buf.add(run, "2")
    assert not buf.full
    buf.add(run, "2")
    assert buf.full and len(buf.take()) == 2 and buf.pending == []
    off = LogBuffer(max_bytes=0)
    off.add(run, "2")
    assert off.pending == []


def _log(job_key: str, run_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "job_key": job_key,
        "run_id": run_id,
        "stdout": f"out {run_id}",
        "stderr": "err",
        "stdout_bytes": 6,
        "stderr_bytes": 3,
        "timestamp": "2024-01-01T00:00:00",
        **extra,
    }


def test_job_logs_api(client: Any, workflow: str) -> None:
    job = client.post(f"/workflows/{workflow}/jobs", json={"command": "true"}).json["_key"]
    other = client.post(f"/workflows/{workflow}/jobs", json={"command": "true"}).json["_key"]
    one = client.post(f"/workflows/{workflow}/job_logs", json=_log(f"jobs/{job}", 0))
    assert one.status_code == 200, one.json
    assert one.json["job_key"] == job and one.json["stdout"] == "out 0"
    bulk = client.post(
        f"/workflows/{workflow}/bulk_job_logs", json={"logs": [_log(job, 1), _log(other, 0)]}
    )
    assert bulk.status_code == 200 and bulk.json["count"] == 2
    logs = client.get(f"/workflows/{workflow}/jobs/{job}/logs").json
    assert [x["run_id"] for x in logs["items"]] == [0, 1] and logs["total_count"] == 2
    run1 = client.get(f"/workflows/{workflow}/jobs/{job}/logs?run_id=1").json["items"]
    assert [x["stdout"] for x in run1] == ["out 1"]
    listed = client.get(f"/workflows/{workflow}/job_logs?job_key={other}").json["items"]
    assert [x["job_key"] for x in listed] == [other]
    key = one.json["_key"]
    assert client.get(f"/workflows/{workflow}/job_logs/{key}").json["stdout"] == "out 0"


def test_job_logs_api_errors(client: Any, workflow: str, app: Any) -> None:
    engine = app.extensions["hpcflow"].engine
    before = row_counts(engine)
    bad = client.post(f"/workflows/{workflow}/job_logs", json={"job_key": "1"})
    assert bad.status_code == 422 and "timestamp" in bad.json["errorMessage"]
    neg = client.post(
        f"/workflows/{workflow}/bulk_job_logs", json={"logs": [_log("1", 0), _log("1", -1)]}
    )
    assert neg.status_code == 422 and "run_id" in neg.json["errorMessage"]
    assert row_counts(engine) == before
    assert client.get(f"/workflows/{workflow}/jobs/999/logs").status_code == 404
    assert client.get(f"/workflows/{workflow}/job_logs/999").status_code == 404
    assert client.get("/workflows/999/job_logs").status_code == 404
    assert client.get(f"/workflows/{workflow}/jobs/x/logs?run_id=z").status_code == 400


def test_output_dir_env(tmp_path: Path) -> None:
    env = proc.job_env(os.environ, workflow_key="1", job_key="2", run_id=0, output_dir=tmp_path)
    assert env["HPCFLOW_OUTPUT_DIR"] == str(tmp_path)
