"""End to end: the server dies mid-run (restarted, or gone for good) while jobs run."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from hpcflow.runner.loop import Runner
from hpcflow.runner.options import RunnerOptions
from hpcflow.runner.resources import Offer
from tests.runner.conftest import build, py

SLEEP = "import time; time.sleep({})"


@pytest.fixture
def proc_server(tmp_path: Path, sqlite_template: Path) -> Iterator[EmbeddedServer]:
    """A server in its own process, so the test can kill it like a crash."""
    db = tmp_path / "server.db"
    shutil.copy(sqlite_template, db)
    srv = EmbeddedServer(f"sqlite:///{db}", mode="process")
    srv.start()
    yield srv
    srv.stop()


def make_runner(api: Client, wf: str, tmp_path: Path, on_finish: Any, **kw: Any) -> Runner:
    opts = RunnerOptions(
        output_dir=tmp_path / "out",
        idle_timeout=5,
        poll_interval=0.05,
        status_interval=0.2,
        heartbeat_interval=0.2,
        **kw,
    )
    return Runner(api, wf, Offer(num_cpus=4, memory_bytes=8 * 1024**3), opts, on_finish=on_finish)


def test_server_restart_mid_run_loses_nothing(proc_server: EmbeddedServer, tmp_path: Path) -> None:
    api = Client(proc_server.url, timeout=10)
    wf, keys = build(
        api,
        [
            {"name": "first", "command": py(SLEEP.format(0.1))},
            # runs through the outage and completes while the server is down
            {"name": "long", "command": py(SLEEP.format(2.0))},
            *(
                {
                    "name": f"chain{i}",
                    "command": py(SLEEP.format(0.1)),
                    "blocked_by": ["first" if i == 0 else f"chain{i - 1}"],
                }
                for i in range(4)
            ),
            {"name": "last", "command": py("pass"), "blocked_by": ["long", "chain3"]},
        ],
    )
    finished: list[str] = []
    restarted = threading.Event()

    def restart() -> None:
        proc_server.start()  # same port
        restarted.set()

    def on_finish(job: dict[str, Any], status: str, code: int) -> None:
        finished.append(job["name"])
        if job["name"] == "first":
            proc_server.stop(kill=True)
            threading.Timer(1.0, restart).start()

    runner = make_runner(api, wf, tmp_path, on_finish, server_retry_seconds=60)
    outcome = runner.run()
    assert restarted.is_set()
    assert outcome.reason == "complete", outcome
    assert outcome.counts["done"] == len(keys)
    assert sorted(finished) == sorted(keys)
    jobs = {j["name"]: j["status"] for j in api.iter_items(f"/workflows/{wf}/jobs")}
    assert set(jobs.values()) == {"done"}
    results = list(api.iter_items(f"/workflows/{wf}/results"))
    assert sorted(r["job_key"] for r in results) == sorted(keys.values())  # one each
    assert all(r["return_code"] == 0 for r in results)


def test_server_gone_stops_jobs_and_says_why(proc_server: EmbeddedServer, tmp_path: Path) -> None:
    api = Client(proc_server.url, timeout=5)
    wf, _keys = build(
        api,
        [
            {"name": "first", "command": py("pass")},
            {"name": "long", "command": py(SLEEP.format(60))},
        ],
    )

    def on_finish(job: dict[str, Any], status: str, code: int) -> None:
        if job["name"] == "first":
            proc_server.stop(kill=True)

    runner = make_runner(api, wf, tmp_path, on_finish, server_retry_seconds=1.0)
    outcome = runner.run()
    assert outcome.reason == "server_gone"
    assert "unreachable" in outcome.message and "stopped all jobs" in outcome.message
    assert runner.supervisor.running == {}
    assert runner.counts["done"] == 1
