"""Smoke tests proving the test Slurm cluster is real: sbatch runs, scancel kills, jobs overlap."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm.helpers import sbatch, scontrol_job, wait_state
from tests.slurm.procs import alive
from tests.slurm_cluster import SlurmCluster, clean_leftovers

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[2]


def wait_file(path: Path, timeout: float = 30.0) -> str:
    """Poll until a job has written a non-empty file; returns its text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} not written within {timeout:.0f} s")


def test_batch_job_runs_and_writes_its_file(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "result.txt"
    job = sbatch(slurm_cluster, f'echo "$SLURM_JOB_ID $SLURMD_NODENAME" > {out}\n', tmp_path)
    assert wait_state(slurm_cluster, job, {"COMPLETED"}) == "COMPLETED"
    assert out.read_text().split() == [job, slurm_cluster.node_name]
    info = scontrol_job(slurm_cluster, job)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0")
    # jobcomp/filetxt keeps the final state without an accounting database.
    jobcomp = (slurm_cluster.conf_path.parent / "jobcomp.txt").read_text()
    assert f"JobId={job} " in jobcomp and "JobState=COMPLETED" in jobcomp


def test_failing_job_is_failed_with_its_exit_code(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    job = sbatch(slurm_cluster, "exit 3\n", tmp_path)
    assert wait_state(slurm_cluster, job, {"FAILED"}) == "FAILED"
    assert scontrol_job(slurm_cluster, job)["ExitCode"] == "3:0"


def test_scancel_kills_a_running_job(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    pid_file = tmp_path / "sleep.pid"
    job = sbatch(slurm_cluster, f"sleep 300 &\necho $! > {pid_file}\nwait\n", tmp_path)
    wait_state(slurm_cluster, job, {"RUNNING"})
    sleeper = int(wait_file(pid_file))
    assert alive(sleeper)
    slurm_cluster.run("scancel", job)
    assert wait_state(slurm_cluster, job, {"CANCELLED"}) == "CANCELLED"
    assert scontrol_job(slurm_cluster, job)["JobState"] == "CANCELLED"
    deadline = time.monotonic() + slurm_cluster.kill_wait + 5
    while alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(sleeper), "scancel left the job's sleep running"


def test_two_one_cpu_jobs_run_at_the_same_time(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # Each job announces itself, then waits for the other: both complete only if they overlap.
    script = (
        "touch {me}\nfor i in $(seq 200); do [ -e {other} ] && exit 0; sleep 0.1; done\nexit 1\n"
    )
    a, b = tmp_path / "a.started", tmp_path / "b.started"
    jobs = [
        sbatch(
            slurm_cluster, script.format(me=a, other=b), tmp_path, "--ntasks=1", "--cpus-per-task=1"
        ),
        sbatch(
            slurm_cluster, script.format(me=b, other=a), tmp_path, "--ntasks=1", "--cpus-per-task=1"
        ),
    ]
    for job in jobs:
        assert wait_state(slurm_cluster, job, {"COMPLETED"}) == "COMPLETED"
    assert {scontrol_job(slurm_cluster, j)["NumCPUs"] for j in jobs} == {"1"}


def test_stop_cancels_jobs_and_stops_every_daemon(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    other = SlurmCluster(cpus=2, memory_mb=1024, node_name="stoptest")
    other.start()
    scratch = other.scratch
    assert scratch is not None and other.ctld_port != slurm_cluster.ctld_port
    daemons = list(other.pids())
    assert len(daemons) == 3
    pid_file = tmp_path / "sleep.pid"
    job = sbatch(other, f"sleep 300 &\necho $! > {pid_file}\nwait\n", tmp_path)
    wait_state(other, job, {"RUNNING"})
    sleeper = int(wait_file(pid_file))
    other.stop()
    assert not scratch.exists()
    assert [p for p in [*daemons, sleeper] if alive(p)] == []
    # The session's cluster, in another scratch folder, was not touched.
    assert slurm_cluster.controller_up() and slurm_cluster.node_idle()


def test_leftovers_of_a_dead_session_are_cleaned(slurm_cluster: SlurmCluster) -> None:
    code = (
        "import os\nfrom tests.slurm_cluster import SlurmCluster\n"
        "c = SlurmCluster(cpus=2, memory_mb=1024, node_name='orphan1')\nc.start()\n"
        "print(c.scratch, *c.pids(), flush=True)\nos._exit(0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    folder, *pid_texts = proc.stdout.split()
    pids = [int(p) for p in pid_texts]
    assert len(pids) == 3 and all(alive(p) for p in pids)
    cleaned = clean_leftovers()
    assert Path(folder) in cleaned and not Path(folder).exists()
    assert [p for p in pids if alive(p)] == []
    assert slurm_cluster.scratch is not None and slurm_cluster.scratch.exists()
    assert slurm_cluster.controller_up()
