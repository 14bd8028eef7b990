"""The autoscaler on the real cluster: `hpcflow serve` launches, replaces and releases nodes.

One `hpcflow serve` process (gunicorn, two workers, the loop on, ticking every 0.5 s) serves
the module's tests; nothing is launched by hand. The cluster's SLURM_CONF is in the server's
environment, so its SlurmSubmitter talks to the test cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hpcflow.client import Client
from hpcflow.errors import HpcflowError
from tests.runner.conftest import build, py
from tests.slurm.e2e import live_ids, logs, statuses, wait_for
from tests.slurm_cluster import SlurmCluster, free_port

pytestmark = pytest.mark.slurm
HEARTBEAT = 2.0
ENDED = {"completed", "failed", "canceled", "timeout"}


@dataclass
class Served:
    """A running `hpcflow serve` and what the tests made on it."""

    url: str
    root: Path
    proc: subprocess.Popen[bytes]
    workflows: list[str] = field(default_factory=list)

    @property
    def api(self) -> Client:
        return Client(self.url, timeout=30)

    def explain(self, wf: str) -> str:
        """Job states, the workflow's allocations and the logs, for failure messages."""
        rows = [
            (r["scheduler_id"], r["status"])
            for r in self.api.iter_items(f"/workflows/{wf}/scheduled_compute_nodes")
        ]
        return "\n".join(
            [
                str(statuses(self.api, wf)),
                f"allocations: {rows}",
                logs(sorted((self.root / "nodes").rglob("*.out"))),
                logs([self.root / "serve.log"], tail=4000),
            ]
        )


@pytest.fixture(scope="module")
def served(
    slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Served]:
    """`hpcflow serve` on a free port with SQLite, its node_dir and the cluster's env."""
    root = tmp_path_factory.mktemp("serve")
    shutil.copy(sqlite_template, root / "server.db")
    port = free_port()
    env = {
        **os.environ,
        **slurm_cluster.env,
        "PYTHONUNBUFFERED": "1",
        "HPCFLOW_NODE_DIR": str(root / "nodes"),
        "HPCFLOW_HEARTBEAT_INTERVAL_SECONDS": f"{HEARTBEAT:g}",
    }
    with (root / "serve.log").open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hpcflow",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database-url",
                f"sqlite:///{root / 'server.db'}",
                "--workers",
                "2",
                "--autoscale-interval",
                "0.5",
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Served(f"http://127.0.0.1:{port}", root, proc)

    def up() -> bool:
        assert proc.poll() is None, logs([root / "serve.log"])
        try:
            return server.api.get("/ping")["status"] == "ok"
        except HpcflowError:
            return False

    try:
        wait_for("hpcflow serve to answer", up, 30)
        yield server
    finally:
        slurm_cluster.cancel_all()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def server(served: Served, slurm_cluster: SlurmCluster) -> Iterator[Served]:
    """The shared server; a test's workflows are canceled (so the loop lets go) at its end."""
    yield served
    for wf in served.workflows:
        with contextlib.suppress(HpcflowError):
            served.api.post(f"/workflows/{wf}/cancel")
    served.workflows.clear()
    slurm_cluster.cancel_all()


def slurm_config(api: Client, wf: str, **fields: Any) -> dict[str, Any]:
    """Two CPUs and 1 GiB per allocation (the jobs' shapes are chosen against it)."""
    body = {
        "name": "auto",
        "account": "hpcflow",
        "walltime": "00:10:00",
        "cpus_per_task": 2,
        "mem": "1G",
        **fields,
    }
    return dict(api.post(f"/workflows/{wf}/slurm_schedulers", body))


def allocations(api: Client, wf: str) -> list[dict[str, Any]]:
    return list(api.iter_items(f"/workflows/{wf}/scheduled_compute_nodes"))


def events(api: Client, wf: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in api.iter_items(f"/workflows/{wf}/events") if e.get("type") == kind]


def test_loop_runs_two_resource_classes_and_lets_go(
    server: Served, slurm_cluster: SlurmCluster
) -> None:
    api = server.api
    work = py("import time; time.sleep(0.2)")
    specs = [{"name": f"one{i}", "command": work, "cpus": 1, "memory": "256m"} for i in range(20)]
    specs += [{"name": f"two{i}", "command": work, "cpus": 2, "memory": "600m"} for i in range(20)]
    wf, _keys = build(api, specs)
    server.workflows.append(wf)
    # The loop has nothing to launch until the workflow has a config; from here on it is alone.
    cfg = slurm_config(api, wf, max_nodes=3, max_queued=2)
    wait_for(
        "the workflow to complete",
        lambda: api.get(f"/workflows/{wf}/is_complete")["is_complete"],
        120,
        lambda: server.explain(wf),
    )
    assert set(statuses(api, wf).values()) == {"done"}
    assert {r["return_code"] for r in api.iter_items(f"/workflows/{wf}/results")} == {0}
    rows = allocations(api, wf)
    ids = {str(r["scheduler_id"]) for r in rows}
    assert rows and {r["scheduler_config_id"] for r in rows} == {cfg["_id"]}
    # Every runner lived in an allocation the loop launched and recorded.
    runners = list(api.iter_items(f"/workflows/{wf}/compute_nodes"))
    assert runners and {str(r["scheduler"]["job_id"]) for r in runners} <= ids
    assert {r["resources"]["num_cpus"] for r in runners} == {2}
    assert sum(len(e["scheduler_ids"]) for e in events(api, wf, "launch")) == len(rows)
    # Done: runners leave by themselves, queued allocations are released, nothing stays.
    wait_for(
        "no allocation of the workflow left in squeue",
        lambda: not ids & live_ids(slurm_cluster),
        30,
        lambda: server.explain(wf),
    )
    wait_for(
        "the loop to record every allocation ended",
        lambda: all(r["status"] in ENDED for r in allocations(api, wf)),
        15,
        lambda: server.explain(wf),
    )
    assert not any(r["is_active"] for r in api.iter_items(f"/workflows/{wf}/compute_nodes"))


def test_scancel_mid_run_reruns_the_jobs_on_a_new_allocation(
    server: Served, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    api = server.api
    marks, go = tmp_path / "marks", tmp_path / "go"
    marks.mkdir()
    # Each run leaves a mark named after its allocation, then waits for the test's go-ahead.
    code = (
        f"import os, sys, time\nopen(os.path.join({str(marks)!r}, sys.argv[1] + '.' + "
        f"os.environ['SLURM_JOB_ID']), 'w').close()\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.05)"
    )
    wf, keys = build(api, [{"name": f"j{i}", "command": f"{py(code)} j{i}"} for i in range(3)])
    server.workflows.append(wf)
    slurm_config(api, wf, max_nodes=1, max_queued=1)

    def running() -> list[str]:
        return sorted(n for n, s in statuses(api, wf).items() if s == "submitted")

    first = wait_for(
        "two jobs to run in the first allocation",
        lambda: len(running()) == 2 and len(list(marks.iterdir())) == 2 and running(),
        60,
        lambda: server.explain(wf),
    )
    [row_a] = allocations(api, wf)
    a = str(row_a["scheduler_id"])
    assert {p.name for p in marks.iterdir()} == {f"{n}.{a}" for n in first}
    slurm_cluster.run("scancel", a)

    def replaced() -> str | None:
        rows = {str(r["scheduler_id"]): r for r in allocations(api, wf)}
        fresh = [sid for sid, r in rows.items() if sid != a and r["status"] == "running"]
        return fresh[0] if rows[a]["status"] == "canceled" and fresh else None

    b = wait_for("the loop to launch a new allocation", replaced, 60, lambda: server.explain(wf))
    wait_for(
        "the stopped jobs to run again",
        lambda: {f"{n}.{b}" for n in first} <= {p.name for p in marks.iterdir()},
        60,
        lambda: server.explain(wf),
    )
    go.touch()
    wait_for(
        "the workflow to complete",
        lambda: api.get(f"/workflows/{wf}/is_complete")["is_complete"],
        60,
        lambda: server.explain(wf),
    )
    assert set(statuses(api, wf).values()) == {"done"}
    rows = {str(r["scheduler_id"]): r for r in allocations(api, wf)}
    assert rows[a]["status"] == "canceled" and rows[a]["message"] == "ended: canceled"
    # The events tell what happened: the node is lost, its jobs are retried without a retry used.
    lost = events(api, wf, "lost")
    assert [e["reason"] for e in lost] == [f"allocation {a} ended (canceled)"], lost
    retried = {e["job_key"]: e for e in events(api, wf, "retry")}
    assert set(retried) == {keys[n] for n in first}
    assert not any(e["retry_counted"] for e in retried.values())
    jobs = {j["name"]: j for j in api.iter_items(f"/workflows/{wf}/jobs")}
    for name in first:
        assert jobs[name]["num_retries"] == 0
        runs = [r for r in api.iter_items(f"/workflows/{wf}/results") if r["job_key"] == keys[name]]
        # Two runs: the one the cancel cut short, then the one that finished.
        assert len(runs) == 2 and runs[0]["return_code"] != 0 and runs[1]["return_code"] == 0
    wait_for(
        "no allocation of the workflow left in squeue",
        lambda: not set(rows) & live_ids(slurm_cluster),
        30,
        lambda: server.explain(wf),
    )
