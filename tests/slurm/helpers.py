"""Small helpers for tests that drive the real Slurm cluster with its own commands."""

from __future__ import annotations

import time
from pathlib import Path

from tests.slurm_cluster import SlurmCluster

FINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}


def sbatch(cluster: SlurmCluster, script: str, workdir: Path, *args: str) -> str:
    """Submit a batch script (text) from `workdir`; returns the job id."""
    path = workdir / f"job-{time.monotonic_ns()}.sh"
    path.write_text("#!/bin/bash\n" + script)
    proc = cluster.run(
        "sbatch",
        "--parsable",
        f"--chdir={workdir}",
        f"--output={workdir}/slurm-%j.out",
        *args,
        str(path),
    )
    return proc.stdout.strip().split(";")[0]


def job_state(cluster: SlurmCluster, job_id: str) -> str:
    """The job's state from `squeue -t all` (finished jobs stay listed for MinJobAge)."""
    proc = cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T", check=False)
    return proc.stdout.strip()


def wait_state(cluster: SlurmCluster, job_id: str, states: set[str], timeout: float = 30.0) -> str:
    """Poll until the job is in one of `states`; fail naming the last state on timeout."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = job_state(cluster, job_id)
        if state in states:
            return state
        if state in FINAL:
            raise AssertionError(f"job {job_id} ended {state}, expected {sorted(states)}")
        time.sleep(0.1)
    raise AssertionError(
        f"job {job_id} still {state or 'unlisted'} after {timeout:.0f} s, expected {sorted(states)}"
    )


def scontrol_job(cluster: SlurmCluster, job_id: str) -> dict[str, str]:
    """`scontrol show job` as KEY -> value (first occurrence of each key)."""
    out = cluster.run("scontrol", "-o", "show", "job", job_id).stdout
    fields: dict[str, str] = {}
    for token in out.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields
