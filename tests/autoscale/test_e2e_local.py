"""The autoscaler end to end on this machine: the loop launches local runners, nothing else does.

A real server process with the APScheduler loop on, the real LocalSubmitter, real runner
processes; afterwards no process the test caused is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy.engine import Engine

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from tests.runner.conftest import build, py
from tests.slurm_cluster import free_port


def ours(marker: str, spare: set[int]) -> list[psutil.Process]:
    """Live processes whose command line names `marker` (the test's folder), except `spare`."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid in spare or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if marker in " ".join(proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def server_pid(server: EmbeddedServer) -> int:
    """The pid of a server started with mode="process"."""
    proc = server._proc
    assert proc is not None
    return proc.pid


def kill_ours(marker: str, spare: set[int]) -> None:
    """SIGKILL every process of the test that is still alive (teardown, even after failures)."""
    for proc in ours(marker, spare):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


@pytest.fixture
def server(backend: Engine, tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server subprocess whose autoscaler ticks every 0.3 s and launches into tmp_path."""
    url = backend.url.render_as_string(hide_password=False)
    # Launched runners need the server's address before it binds: choose the port here.
    port = free_port()
    srv = EmbeddedServer(
        url,
        mode="process",
        port=port,
        settings={
            "public_url": f"http://127.0.0.1:{port}",
            "autoscale_enabled": True,
            "autoscale_interval_seconds": 0.3,
            "node_dir": str(tmp_path / "nodes"),
            "heartbeat_interval_seconds": 1.0,
        },
    )
    srv.start()
    try:
        yield srv
    finally:
        spare = {os.getpid(), server_pid(srv)}
        srv.stop()
        kill_ours(str(tmp_path), spare)


def wait_for(what: str, probe: Any, timeout: float, explain: Any = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while not (got := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{explain()}"
        time.sleep(0.1)
    return got


def test_local_runners_launched_by_the_loop_finish_the_workflow(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    api = Client(server.url, timeout=30)
    marks = tmp_path / "marks"
    marks.mkdir()
    code = (
        f"import os, sys; open(os.path.join({str(marks)!r}, sys.argv[1]), 'w')"
        ".write(os.environ['HPCFLOW_COMPUTE_NODE_KEY'])"
    )
    specs: list[dict[str, Any]] = [
        {"name": f"j{i}", "command": f"{py(code)} j{i}"} for i in range(8)
    ]
    specs.append(
        {"name": "last", "command": f"{py(code)} last", "blocked_by": [s["name"] for s in specs]}
    )
    # Built and initialized before the config exists: the loop must not launch half-way.
    wf, keys = build(api, specs)
    cfg = api.post(
        f"/workflows/{wf}/local_schedulers",
        {"name": "here", "num_cpus": 2, "memory": "2g", "max_nodes": 2, "max_queued": 2},
    )

    def explain() -> str:
        logs = sorted((tmp_path / "nodes" / "local").glob("*.log"))
        return "\n".join(
            [
                str({j["name"]: j["status"] for j in api.iter_items(f"/workflows/{wf}/jobs")}),
                *(p.read_text()[-1500:] for p in logs),
            ]
        )

    wait_for(
        "the workflow to complete",
        lambda: api.get(f"/workflows/{wf}/is_complete")["is_complete"],
        60,
        explain,
    )
    assert {j["name"]: j["status"] for j in api.iter_items(f"/workflows/{wf}/jobs")} == {
        s["name"]: "done" for s in specs
    }
    allocations = list(api.iter_items(f"/workflows/{wf}/scheduled_compute_nodes"))
    assert allocations and len(allocations) <= 2
    assert {a["scheduler_config_id"] for a in allocations} == {cfg["_id"]}
    # Every job ran on a runner of an allocation the loop launched (no runner started here).
    runners = {r["_key"]: r for r in api.iter_items(f"/workflows/{wf}/compute_nodes")}
    assert {p.read_text() for p in marks.iterdir()} <= set(runners)
    assert {str(r["scheduler"]["scheduler_id"]) for r in runners.values()} <= {
        str(a["scheduler_id"]) for a in allocations
    }
    # The runners see the workflow complete and exit; the loop records their allocations ended.
    wait_for(
        "every allocation to end",
        lambda: all(
            a["status"] == "completed"
            for a in api.iter_items(f"/workflows/{wf}/scheduled_compute_nodes")
        ),
        30,
        explain,
    )
    assert not any(r["is_active"] for r in api.iter_items(f"/workflows/{wf}/compute_nodes"))
    # The server's own command line names the folder too; everything else must be gone.
    spare = {os.getpid(), server_pid(server)}
    wait_for(
        "no process of the test left",
        lambda: not ours(str(tmp_path), spare),
        10,
        lambda: str([p.info["cmdline"] for p in ours(str(tmp_path), spare)]),
    )
    for r in runners.values():
        assert (
            not psutil.pid_exists(int(r["pid"]))
            or psutil.Process(int(r["pid"])).status() == psutil.STATUS_ZOMBIE
        )
    launched = [e for e in api.iter_items(f"/workflows/{wf}/events") if e.get("type") == "launch"]
    assert sum(len(e["scheduler_ids"]) for e in launched) == len(allocations)
    assert len(keys) == 9
