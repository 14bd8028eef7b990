"""Resource detection (local, Slurm, nvidia-smi, flags) and walltime arithmetic."""

from __future__ import annotations

import subprocess
from datetime import datetime
from typing import Any

import psutil
import pytest

from hpcflow.runner import resources as res

MIB = 1024**2


def no_tool(_name: str) -> None:
    return None


def fake_run(stdout: str, returncode: int = 0) -> Any:
    calls: list[list[str]] = []

    def run(cmd: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, returncode, stdout=stdout, stderr="")

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_local_detection_uses_the_machine() -> None:
    offer = res.detect({}, which=no_tool)
    assert offer.num_cpus == len(__import__("os").sched_getaffinity(0))
    assert offer.memory_bytes == psutil.virtual_memory().total
    assert offer.num_gpus == 0 and offer.num_nodes == 1


def test_gpus_from_nvidia_smi() -> None:
    run = fake_run("GPU 0: A100 (UUID: x)\nGPU 1: A100 (UUID: y)\n")
    offer = res.detect({}, which=lambda name: f"/usr/bin/{name}", run=run)
    assert offer.num_gpus == 2
    assert run.calls == [["nvidia-smi", "-L"]]
    failing = fake_run("", returncode=9)
    assert res.detect({}, which=lambda n: n, run=failing).num_gpus == 0


def test_cuda_visible_devices_wins_over_nvidia_smi() -> None:
    offer = res.detect({"CUDA_VISIBLE_DEVICES": "0,3,5"}, which=no_tool)
    assert offer.num_gpus == 3


def test_slurm_environment() -> None:
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_CPUS_ON_NODE": "8",
        "SLURM_MEM_PER_NODE": "16000",
        "SLURM_GPUS_ON_NODE": "2",
        "SLURM_JOB_NUM_NODES": "3",
    }
    assert res.detect(env, which=no_tool) == res.Offer(8, 16000 * MIB, 2, 3)


def test_slurm_memory_per_cpu_and_cpus_per_node_format() -> None:
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_CPUS_PER_NODE": "4(x2)",
        "SLURM_MEM_PER_CPU": "1000",
        "SLURM_JOB_GPUS": "0,1",
        "SLURM_NNODES": "2",
    }
    assert res.detect(env, which=no_tool) == res.Offer(4, 4000 * MIB, 2, 2)


def test_flags_override_detection() -> None:
    env = {"SLURM_JOB_ID": "42", "SLURM_CPUS_ON_NODE": "8", "SLURM_MEM_PER_NODE": "16000"}
    offer = res.detect(env, num_cpus=2, memory="1g", num_gpus=1, num_nodes=1, which=no_tool)
    assert offer == res.Offer(2, 1024**3, 1, 1)


def test_offer_as_torc_resources() -> None:
    doc = res.Offer(4, 2 * 1024**3, 1, 1).as_resources("P0DT1H", "slurm_schedulers/2")
    assert doc == {
        "num_cpus": 4,
        "memory_gb": 2.0,
        "num_gpus": 1,
        "num_nodes": 1,
        "time_limit": "P0DT1H",
        "scheduler_config_id": "slurm_schedulers/2",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("P0DT1H30M", 5400),
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1:00:00", 3600),
        ("2-00:00:00", 172800),
        ("10", 600),
        ("1.5m", 90),
    ],
)
def test_time_limit_formats(text: str, seconds: float) -> None:
    assert res.parse_time_limit(text) == seconds


def test_bad_time_limit_is_an_error() -> None:
    with pytest.raises(ValueError):
        res.parse_time_limit("soon")


def test_walltime_end_sources() -> None:
    assert res.walltime_end("1h", {}, now=1000.0) == 4600.0
    assert res.walltime_end(None, {"SLURM_JOB_END_TIME": "5000"}, now=1000.0) == 5000.0
    assert res.walltime_end(None, {}, now=1000.0, which=no_tool) is None
    # squeue prints the end in local time without a zone
    run = fake_run("2030-01-02T03:04:05\n")
    end = res.walltime_end(None, {"SLURM_JOB_ID": "42"}, now=0.0, which=lambda n: n, run=run)
    assert end == datetime(2030, 1, 2, 3, 4, 5).timestamp()
    assert run.calls == [["squeue", "-h", "-j", "42", "-o", "%e"]]
    assert (
        res.walltime_end(
            None, {"SLURM_JOB_ID": "42"}, now=0.0, which=lambda n: n, run=fake_run("N/A\n")
        )
        is None
    )


def test_walltime_arithmetic() -> None:
    wt = res.Walltime(end=1000.0, buffer=60.0)
    assert wt.stop_at == 940.0
    assert wt.time_for_jobs(900.0) == 40.0
    assert wt.claim_limit(900.5) == "P0DT39S"  # rounded down: never over-promise
    assert not wt.expired(939.9) and wt.expired(940.0)
    assert wt.time_for_jobs(990.0) == 0.0 and wt.claim_limit(990.0) == "P0DT0S"
    forever = res.Walltime(end=None, buffer=60.0)
    assert forever.claim_limit(1e12) is None and not forever.expired(1e12)
