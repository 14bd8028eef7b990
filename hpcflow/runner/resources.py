"""What this compute node offers (CPUs, memory, GPUs, nodes) and when its walltime ends."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import psutil

from hpcflow.units import format_duration, parse_duration, parse_memory, parse_slurm_time

GIB = 1024**3
MIB = 1024**2
_SUFFIXED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
Runner = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Offer:
    """Everything this runner may hand out to jobs at once."""

    num_cpus: int
    memory_bytes: int
    num_gpus: int = 0
    num_nodes: int = 1

    def as_resources(
        self, time_limit: str | None = None, scheduler_config_id: str | None = None
    ) -> dict[str, object]:
        """torc's compute_nodes_resources document."""
        return {
            "num_cpus": self.num_cpus,
            "memory_gb": self.memory_bytes / GIB,
            "num_gpus": self.num_gpus,
            "num_nodes": self.num_nodes,
            "time_limit": time_limit,
            "scheduler_config_id": scheduler_config_id,
        }


def _first_int(text: str | None) -> int | None:
    """The leading integer of a Slurm count such as '4(x2)' or '16'."""
    if not text:
        return None
    match = re.match(r"\s*(\d+)", text)
    return int(match.group(1)) if match else None


def _count_list(text: str | None) -> int | None:
    """Devices in a comma list such as CUDA_VISIBLE_DEVICES='0,1'; None when unset."""
    if text is None or text.strip() in ("", "NoDevFiles"):
        return None
    return len([x for x in text.split(",") if x.strip()])


def count_gpus(
    which: Callable[[str], str | None] = shutil.which, run: Runner = subprocess.run
) -> int:
    """NVIDIA GPUs listed by `nvidia-smi -L`; 0 when the tool is missing or fails."""
    if which("nvidia-smi") is None:
        return 0
    try:
        out = run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1


def detect(
    env: Mapping[str, str] | None = None,
    *,
    num_cpus: int | None = None,
    memory: str | int | None = None,
    num_gpus: int | None = None,
    num_nodes: int | None = None,
    which: Callable[[str], str | None] = shutil.which,
    run: Runner = subprocess.run,
) -> Offer:
    """Detect this node's resources; inside Slurm from SLURM_*; explicit values win."""
    env = os.environ if env is None else env
    in_slurm = "SLURM_JOB_ID" in env
    cpus = mem = gpus = nodes = None
    if in_slurm:
        cpus = _first_int(env.get("SLURM_CPUS_ON_NODE")) or _first_int(
            env.get("SLURM_JOB_CPUS_PER_NODE")
        )
        per_node = _first_int(env.get("SLURM_MEM_PER_NODE"))
        per_cpu = _first_int(env.get("SLURM_MEM_PER_CPU"))
        if per_node:
            mem = per_node * MIB
        elif per_cpu and cpus:
            mem = per_cpu * cpus * MIB
        gpus = _first_int(env.get("SLURM_GPUS_ON_NODE"))
        if gpus is None:
            gpus = _count_list(env.get("SLURM_JOB_GPUS"))
        nodes = _first_int(env.get("SLURM_JOB_NUM_NODES")) or _first_int(env.get("SLURM_NNODES"))
    if gpus is None:
        visible = _count_list(env.get("CUDA_VISIBLE_DEVICES"))
        gpus = (
            visible
            if visible is not None
            else (0 if num_gpus is not None else count_gpus(which, run))
        )
    if isinstance(memory, str):
        memory = parse_memory(memory)
    return Offer(
        num_cpus=num_cpus if num_cpus is not None else (cpus or _local_cpus()),
        memory_bytes=memory if memory is not None else (mem or psutil.virtual_memory().total),
        num_gpus=num_gpus if num_gpus is not None else gpus,
        num_nodes=num_nodes if num_nodes is not None else (nodes or 1),
    )


def parse_time_limit(text: str) -> float:
    """Seconds in a time limit: ISO 8601 ('P0DT1H'), '90s'/'30m'/'2h'/'1d', or Slurm ('1:00:00')."""
    text = text.strip()
    if text.upper().startswith("P"):
        return parse_duration(text)
    match = _SUFFIXED.match(text)
    if match:
        return float(match.group(1)) * _SECONDS[match.group(2).lower()]
    return parse_slurm_time(text)


def slurm_end_time(
    env: Mapping[str, str],
    which: Callable[[str], str | None] = shutil.which,
    run: Runner = subprocess.run,
) -> float | None:
    """The allocation's end (epoch seconds) from SLURM_JOB_END_TIME, else from squeue."""
    raw = env.get("SLURM_JOB_END_TIME")
    if raw and raw.strip().isdigit():
        return float(raw)
    job_id = env.get("SLURM_JOB_ID")
    if not job_id or which("squeue") is None:
        return None
    try:
        out = run(
            ["squeue", "-h", "-j", job_id, "-o", "%e"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip() if out.returncode == 0 else ""
    try:
        # squeue prints local time without a zone, e.g. 2024-05-01T12:00:00
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def walltime_end(
    time_limit: str | None,
    env: Mapping[str, str] | None,
    now: float,
    which: Callable[[str], str | None] = shutil.which,
    run: Runner = subprocess.run,
) -> float | None:
    """When this runner must be done: --time-limit from now, else Slurm's end, else never."""
    if time_limit:
        return now + parse_time_limit(time_limit)
    return slurm_end_time(os.environ if env is None else env, which, run)


@dataclass
class Walltime:
    """The end of this runner's allocation and how early to stop jobs before it."""

    end: float | None = None
    buffer: float = 0.0

    @property
    def stop_at(self) -> float:
        """When running jobs get SIGTERM (inf when there is no end)."""
        return math.inf if self.end is None else self.end - self.buffer

    def time_for_jobs(self, now: float) -> float:
        """Seconds a job started now may run before the stop time."""
        return max(0.0, self.stop_at - now)

    def expired(self, now: float) -> bool:
        """True once running jobs must be stopped."""
        return now >= self.stop_at

    def claim_limit(self, now: float) -> str | None:
        """The time_limit to claim with (whole seconds, rounded down), or None when unlimited."""
        left = self.time_for_jobs(now)
        return None if math.isinf(left) else format_duration(math.floor(left))
