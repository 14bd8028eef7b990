"""Leases end to end: a real runner killed mid-job; its job runs again on another runner.

Real server (HTTP, in a thread), real runner processes, real database. Recovery is driven by
calling tick() with a clock past the lease, so nothing sleeps on the lease.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy.engine import Engine

from hpcflow import db
from hpcflow.autoscale import tick
from hpcflow.client import Client
from hpcflow.config import Settings
from hpcflow.runner.embedded import EmbeddedServer
from tests.runner.conftest import build, py

HEARTBEAT = 0.3
SETTINGS = Settings(heartbeat_interval_seconds=HEARTBEAT, lease_intervals=3)
LEASE = HEARTBEAT * 3


class Processes:
    """Processes a test starts; whatever is still alive at teardown is killed."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.pids: list[int] = []

    def runner(self, url: str, wf: str, out: Path) -> subprocess.Popen[bytes]:
        """`hpcflow runner` heartbeating every HEARTBEAT seconds, polling fast."""
        log = (out.parent / f"{out.name}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hpcflow",
                "runner",
                wf,
                "--url",
                url,
                "--heartbeat-interval",
                str(HEARTBEAT),
                "--poll-interval",
                "0.1",
                "--status-interval",
                "0.5",
                "--idle-timeout",
                "30",
                "--output-dir",
                str(out),
                "--num-cpus",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started.append(proc)
        return proc

    def kill_all(self) -> None:
        for pid in [*self.pids, *(p.pid for p in self.started if p.poll() is None)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.started:
            proc.wait(10)


@pytest.fixture
def procs() -> Iterator[Processes]:
    tracker = Processes()
    yield tracker
    tracker.kill_all()


@pytest.fixture
def server(backend: Engine) -> Iterator[EmbeddedServer]:
    """A real server in a thread on the parametrized database."""
    url = backend.url.render_as_string(hide_password=False)
    with EmbeddedServer(
        url, settings={"heartbeat_interval_seconds": HEARTBEAT, "lease_intervals": 3}
    ) as srv:
        yield srv


def wait_for(what: str, probe: Any, timeout: float = 30.0, explain: Any = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while not (got := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{explain()}"
        time.sleep(0.05)
    return got


def test_killed_runner_job_runs_again_elsewhere(
    server: EmbeddedServer, backend: Engine, procs: Processes, tmp_path: Path
) -> None:
    api = Client(server.url, timeout=30)
    first_pid = tmp_path / "first.pid"
    # The first run hangs (until its node dies); the rerun, seeing the pid file, succeeds.
    code = (
        f"import os, sys, time; p = {str(first_pid)!r}\n"
        "if os.path.exists(p): sys.exit(0)\n"
        "open(p, 'w').write(str(os.getpid())); time.sleep(300)"
    )
    wf, keys = build(
        api,
        [
            {"name": "slow", "command": py(code)},
            {"name": "after", "command": py("pass"), "blocked_by": ["slow"]},
        ],
    )
    a = procs.runner(server.url, wf, tmp_path / "out-a")
    job = keys["slow"]

    def log_a() -> str:
        return (tmp_path / "out-a.log").read_text(errors="replace")

    wait_for(
        "the job to run on runner A",
        lambda: (
            first_pid.is_file()
            and first_pid.read_text()
            and api.get(f"/workflows/{wf}/jobs/{job}")["status"] == "submitted"
        ),
        explain=log_a,
    )
    worker = int(first_pid.read_text())
    procs.pids.append(worker)
    [node_a] = api.iter_items(f"/workflows/{wf}/compute_nodes")
    # The node dies: the runner and its job vanish without a word to the server.
    os.kill(a.pid, signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)
    a.wait(10)
    wait_for(
        "the job process to die",
        lambda: (
            not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
        ),
    )
    sessions = db.session_factory(backend)
    beat = api.get(f"/workflows/{wf}/compute_nodes/{node_a['_key']}")["last_heartbeat"]
    # Within the lease the node is not lost, however silent it is.
    with sessions() as session:
        assert tick(session, beat + LEASE - 0.1, {}, SETTINGS).lost_nodes == []
    assert api.get(f"/workflows/{wf}/jobs/{job}")["status"] == "submitted"
    with sessions() as session:
        report = tick(session, beat + LEASE + 0.1, {}, SETTINGS)
    assert report.lost_nodes == [int(node_a["_key"])]
    assert report.retried_jobs == [int(job)] and report.failed_jobs == []
    slow = api.get(f"/workflows/{wf}/jobs/{job}")
    assert (slow["status"], slow["num_retries"]) == ("ready", 1)
    assert not api.get(f"/workflows/{wf}/compute_nodes/{node_a['_key']}")["is_active"]

    b = procs.runner(server.url, wf, tmp_path / "out-b")
    assert b.wait(30) == 0, (tmp_path / "out-b.log").read_text()
    assert "the workflow is complete" in (tmp_path / "out-b.log").read_text()
    assert api.get(f"/workflows/{wf}/is_complete")["is_complete"]
    jobs = {j["name"]: j for j in api.iter_items(f"/workflows/{wf}/jobs")}
    assert {n: j["status"] for n, j in jobs.items()} == {"slow": "done", "after": "done"}
    runs = [
        (r["status"], r["return_code"])
        for r in api.iter_items(f"/workflows/{wf}/results")
        if r["job_key"] == job
    ]
    # Both runs show: the one lost with its node, then the one that succeeded.
    assert runs == [("terminated", -1), ("done", 0)]
    nodes = {n["_key"]: n for n in api.iter_items(f"/workflows/{wf}/compute_nodes")}
    assert len(nodes) == 2 and not any(n["is_active"] for n in nodes.values())
    said = [(e.get("type"), e.get("category")) for e in api.iter_items(f"/workflows/{wf}/events")]
    assert ("lost", "compute_node") in said and ("retry", "job") in said
