"""Demand: node shapes of scheduler configs and first-fit-decreasing packing of ready jobs.

Pure functions over plain values (no database, no I/O) so packing is cheap to test and reason
about. Jobs arrive grouped by identical needs with a count, so a million identical jobs cost one
pass; packing stops opening nodes at each config's launch limit.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from hpcflow.units import parse_duration, parse_memory, parse_slurm_time

GIB = 1024**3
MIB = 1024**2
INF = math.inf
# Slurm without cpus_per_task/ntasks_per_node hands out one CPU per allocation.
DEFAULT_SLURM_CPUS = 1
DEFAULT_AWS_CPUS = 1
_GRES_GPU = re.compile(r"(?:^|,)gpu(?::[^:,]+)?:(\d+)")


@dataclass(frozen=True)
class Shape:
    """What one node (allocation) of a scheduler config offers; INF means no stated limit."""

    cpus: float
    memory: float
    gpus: float
    nodes: int
    walltime: float


@dataclass(frozen=True)
class Need:
    """What one job asks for."""

    cpus: int
    memory: int
    gpus: int
    nodes: int
    runtime: float


@dataclass
class Group:
    """Ready jobs with identical needs and the same config assignment (None: any config)."""

    need: Need
    count: int
    first_job: int
    config_id: str | None
    targets: list[str] = field(default_factory=list)


@dataclass
class Bin:
    """Free room on one node: an active runner, a queued allocation or a node to launch."""

    config_id: str | None
    cpus: float
    memory: float
    gpus: float
    nodes: int
    walltime: float
    kind: str = "new"  # "active", "queued" or "new"
    ref: Any = None
    used: int = 0

    @classmethod
    def of(cls, config_id: str | None, shape: Shape, kind: str = "new", ref: Any = None) -> Bin:
        """An empty node of `shape`."""
        return cls(
            config_id, shape.cpus, shape.memory, shape.gpus, shape.nodes, shape.walltime, kind, ref
        )

    def accepts(self, group: Group) -> bool:
        """A runner claims jobs of its own config and unassigned ones (engine/claims.py)."""
        return group.config_id is None or group.config_id == self.config_id

    def room(self, need: Need, limit: int) -> int:
        """How many such jobs fit in what is left, at most `limit`."""
        if (
            need.nodes > self.nodes
            or need.runtime > self.walltime
            or need.cpus > self.cpus
            or need.memory > self.memory
            or need.gpus > self.gpus
        ):
            return 0
        fit = float(limit)
        for want, free in (
            (need.cpus, self.cpus),
            (need.memory, self.memory),
            (need.gpus, self.gpus),
        ):
            if want > 0 and free != INF:
                fit = min(fit, math.floor(free / want))
        return max(0, int(fit))

    def take(self, need: Need, k: int) -> None:
        """Reserve room for k jobs."""
        self.cpus -= need.cpus * k
        self.memory -= need.memory * k
        self.gpus -= need.gpus * k
        self.used += k


@functools.lru_cache(maxsize=4096)
def parse_time(text: str | None) -> float:
    """Seconds in a walltime written the Slurm way ('04:00:00') or as ISO 8601 ('PT4H')."""
    if not text:
        return INF
    try:
        return parse_slurm_time(text)
    except ValueError:
        return parse_duration(text)


@functools.lru_cache(maxsize=4096)
def parse_slurm_mem(text: str | None) -> float:
    """Bytes in sbatch --mem: a bare number means megabytes there."""
    if not text:
        return INF
    stripped = text.strip()
    return int(stripped) * MIB if stripped.isdigit() else parse_memory(stripped)


def machine_memory() -> float:
    """Physical memory of this machine, for local configs that do not say."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return INF


def config_shape(collection: str, row: Any) -> Shape:
    """The node shape of a config row; ValueError names a malformed field."""
    try:
        if collection == "slurm_schedulers":
            cpus = (row.ntasks_per_node or 1) * (row.cpus_per_task or 1)
            if not (row.ntasks_per_node or row.cpus_per_task):
                cpus = DEFAULT_SLURM_CPUS
            gpus = row.gpus
            if gpus is None and row.gres:
                match = _GRES_GPU.search(row.gres)
                gpus = int(match.group(1)) if match else 0
            return Shape(
                cpus, parse_slurm_mem(row.mem), gpus or 0, row.nodes or 1, parse_time(row.walltime)
            )
        if collection == "local_schedulers":
            memory = parse_memory(row.memory) if row.memory else machine_memory()
            return Shape(row.num_cpus or os.cpu_count() or 1, memory, 0, 1, INF)
        if collection == "aws_schedulers":
            memory = parse_memory(row.memory) if row.memory else INF
            return Shape(
                row.num_cpus or DEFAULT_AWS_CPUS,
                memory,
                row.num_gpus or 0,
                1,
                parse_time(row.walltime),
            )
    except ValueError as exc:
        raise ValueError(f"{collection}/{row.id} has an invalid node shape: {exc}") from None
    raise ValueError(f"unknown scheduler collection {collection!r}")


def _gb(value: float) -> str:
    return f"{value / GIB:.4g} GB"


def unfit_reason(need: Need, shape: Shape, config_id: str) -> str | None:
    """Why one job cannot run on any node of the config, or None when it fits."""
    if need.memory > shape.memory:
        wants, has = _gb(need.memory), _gb(shape.memory)
    elif need.cpus > shape.cpus:
        wants, has = f"{need.cpus} CPUs", f"{shape.cpus:g} CPUs"
    elif need.gpus > shape.gpus:
        wants, has = f"{need.gpus} GPUs", f"{shape.gpus:g} GPUs"
    elif need.nodes > shape.nodes:
        wants, has = f"{need.nodes} nodes", f"{shape.nodes} nodes"
    elif need.runtime > shape.walltime:
        return (
            f"needs a runtime of {need.runtime:g} s; the walltime of {config_id} is "
            f"{shape.walltime:g} s"
        )
    else:
        return None
    return f"needs {wants}; the largest node of {config_id} has {has}"


def sort_key(group: Group) -> tuple[Any, ...]:
    """First-fit *decreasing*: the biggest, scarcest needs are placed first."""
    n = group.need
    return (-n.nodes, -n.gpus, -n.memory, -n.cpus, -n.runtime, group.first_job)


def pack(
    groups: list[Group], bins: list[Bin], shapes: dict[str, Shape], limits: dict[str, int]
) -> tuple[dict[str, int], int]:
    """Place jobs first-fit decreasing into existing bins, then into new nodes under `limits`.

    Returns the new nodes per config and the number of jobs left without a node. Identical jobs
    fill each bin in order, which is exactly what first fit does one job at a time.
    """
    opened: dict[str, int] = {}
    left = 0
    for group in sorted(groups, key=sort_key):
        remaining = group.count
        for b in bins:
            if remaining == 0:
                break
            if b.accepts(group):
                k = b.room(group.need, remaining)
                if k:
                    b.take(group.need, k)
                    remaining -= k
        for target in group.targets:
            while remaining and limits.get(target, 0) > 0:
                new = Bin.of(target, shapes[target])
                k = new.room(group.need, remaining)
                if not k:
                    break
                new.take(group.need, k)
                bins.append(new)
                limits[target] -= 1
                opened[target] = opened.get(target, 0) + 1
                remaining -= k
        left += remaining
    return opened, left
