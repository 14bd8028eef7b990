"""SlurmSubmitter against the real cluster: hpcflow runners in sbatch allocations run a workflow.

The Slurm node is this machine, so runners reach the embedded server on 127.0.0.1.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from submitters.base import NodeRequest, NodeState, SubmitResult
from submitters.slurm import SlurmSubmitter
from tests.runner.conftest import build, jobs_by_name, py, results_by_key
from tests.slurm.helpers import job_state
from tests.slurm.procs import alive
from tests.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slurm
ENDED = {NodeState.COMPLETED, NodeState.FAILED, NodeState.CANCELED, NodeState.TIMEOUT}


@pytest.fixture
def submitter(slurm_cluster: SlurmCluster, tmp_path: Path) -> SlurmSubmitter:
    """A SlurmSubmitter pointed at the test cluster through its environment."""
    return SlurmSubmitter(script_dir=tmp_path / "scripts", env=slurm_cluster.env)


def slurm_config(api: Client, wf: str) -> dict[str, Any]:
    """A slurm_schedulers document for one 2-CPU allocation with a 5-minute walltime."""
    return dict(
        api.post(
            f"/workflows/{wf}/slurm_schedulers",
            {
                "name": "real",
                "account": "hpcflow",
                "walltime": "00:05:00",
                "cpus_per_task": 2,
                "mem": "1G",
            },
        )
    )


def request(api: Client, url: str, wf: str, tmp_path: Path) -> NodeRequest:
    """A NodeRequest whose runner polls fast and leaves soon after the work is done."""
    config = slurm_config(api, wf)
    return NodeRequest(
        workflow_key=wf,
        scheduler_config_id=config["_id"],
        config=config,
        server_url=url,
        runner_args=(
            "--idle-timeout",
            "3",
            "--poll-interval",
            "0.2",
            "--status-interval",
            "0.5",
            "--output-dir",
            str(tmp_path / "job-out"),
        ),
    )


def allocation_log(result: SubmitResult) -> str:
    """The allocation's output file (the runner's own messages), for failure messages."""
    path = Path(result.output_path or "")
    try:
        return f"allocation output {path}:\n{path.read_text()[-3000:]}"
    except OSError:
        return f"allocation output {path}: (missing)"


def watch(
    sub: SlurmSubmitter, job_id: str, until: set[NodeState], timeout: float = 60.0
) -> list[NodeState]:
    """States status() reports, deduplicated in order, until one in `until` (or fail)."""
    seen: list[NodeState] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = sub.status([job_id])[job_id]
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in until:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"allocation {job_id} went {seen}, never {sorted(until)}")


def test_runner_in_allocation_completes_the_workflow(
    server: EmbeddedServer,
    api: Client,
    submitter: SlurmSubmitter,
    slurm_cluster: SlurmCluster,
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    code = (
        f"import os, sys; open(os.path.join({str(marks)!r}, sys.argv[1]), 'w')"
        ".write(os.environ['SLURM_JOB_ID'])"
    )
    wf, _keys = build(
        api,
        [
            {"name": "a", "command": f"{py(code)} a"},
            {"name": "b", "command": f"{py(code)} b"},
            {"name": "c", "command": f"{py(code)} c", "blocked_by": ["a", "b"]},
        ],
    )
    result = submitter.submit(request(api, server.url, wf, tmp_path))
    job_id = result.scheduler_id
    seen = watch(submitter, job_id, ENDED)
    assert seen[-1] == NodeState.COMPLETED, (seen, allocation_log(result))
    assert seen[0] in (NodeState.PENDING, NodeState.RUNNING)
    assert set(seen) <= {NodeState.PENDING, NodeState.RUNNING, NodeState.COMPLETED}
    # Every job ran inside this allocation and the server recorded its success.
    assert {p.name: p.read_text() for p in marks.iterdir()} == dict.fromkeys("abc", job_id), (
        allocation_log(result)
    )
    jobs = jobs_by_name(api, wf)
    assert {n: j["status"] for n, j in jobs.items()} == dict.fromkeys("abc", "done")
    results = results_by_key(api, wf)
    assert {results[j["_key"]]["return_code"] for j in jobs.values()} == {0}
    assert "runner stopped" in Path(result.output_path or "").read_text()
    assert "#SBATCH --cpus-per-task=2" in (result.script or "")
    # Finished: gone from the live queue, still known as COMPLETED to squeue -t all.
    live = slurm_cluster.run("squeue", "-h", "-o", "%i").stdout.split()
    assert job_id not in live
    assert job_state(slurm_cluster, job_id) == "COMPLETED"


def test_cancel_stops_a_running_allocation(
    server: EmbeddedServer,
    api: Client,
    submitter: SlurmSubmitter,
    slurm_cluster: SlurmCluster,
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "long.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    wf, _keys = build(api, [{"name": "long", "command": py(code)}])
    result = submitter.submit(request(api, server.url, wf, tmp_path))
    job_id = result.scheduler_id
    assert watch(submitter, job_id, {NodeState.RUNNING} | ENDED)[-1] == NodeState.RUNNING
    # Wait until the runner has started the workflow's job, so there is real work to stop.
    deadline = time.monotonic() + 30
    while not (pid_file.is_file() and pid_file.read_text()):
        assert time.monotonic() < deadline, (
            jobs_by_name(api, wf)["long"]["status"],
            allocation_log(result),
        )
        time.sleep(0.1)
    assert jobs_by_name(api, wf)["long"]["status"] == "submitted"  # torc's word for running
    worker = int(pid_file.read_text())
    assert alive(worker)
    submitter.cancel([job_id])
    seen = watch(submitter, job_id, ENDED, timeout=30)
    assert seen[-1] == NodeState.CANCELED, seen
    assert job_state(slurm_cluster, job_id) == "CANCELLED"
    assert job_id not in slurm_cluster.run("squeue", "-h", "-o", "%i").stdout.split()
    deadline = time.monotonic() + slurm_cluster.kill_wait + 5
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker), "the canceled allocation's job process is still running"
    # Cancelling again, or an id Slurm never had, is not an error.
    submitter.cancel([job_id, "999999"])
    assert submitter.status(["999999"]) == {"999999": NodeState.UNKNOWN}
