"""Reading one workflow for a tick: its scheduler configs, ready demand and node supply."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcflow.autoscale.demand import GIB, INF, Bin, Group, Need, Shape, config_shape, parse_time
from hpcflow.autoscale.demand import unfit_reason as shape_reason
from hpcflow.autoscale.recovery import allocation_of, config_of
from hpcflow.engine import states
from hpcflow.engine.initialize import chunks
from hpcflow.models import ComputeNode, Job, ScheduledComputeNode
from hpcflow.models.schedulers import AwsScheduler, LocalScheduler, SlurmScheduler

TABLES: dict[str, Any] = {"slurm_schedulers": SlurmScheduler,
                          "local_schedulers": LocalScheduler, "aws_schedulers": AwsScheduler}
# Allocation states (the submitter's vocabulary; torc's runner writes active/complete).
QUEUED = ("pending", "submitted", "unknown")
OPEN = (*QUEUED, "running", "active")
CANCELABLE = ("pending", "submitted")


@dataclass
class Config:
    """One scheduler config of a workflow with its node shape (or why it has none)."""

    collection: str
    row: Any
    shape: Shape | None = None
    error: str | None = None
    # The id jobs carry in scheduler_config_id ('slurm_schedulers/3') and the submitter name.
    id: str = ""
    kind: str = ""

    @classmethod
    def of(cls, collection: str, row: Any) -> Config:
        """Wrap a row, computing its id and shape once."""
        ident, kind = f"{collection}/{row.id}", collection.removesuffix("_schedulers")
        try:
            return cls(collection, row, config_shape(collection, row), None, ident, kind)
        except ValueError as exc:
            return cls(collection, row, None, str(exc), ident, kind)


@dataclass
class Unfit:
    """Ready jobs that no node of any usable config can run, and why."""

    key: str
    first_job: int
    count: int
    reason: str

    def message(self) -> str:
        """'job 12 needs 512 GB; the largest node of slurm_schedulers/3 has 256 GB'."""
        more = f" (and {self.count - 1} more like it)" if self.count > 1 else ""
        return f"job {self.first_job}{more} {self.reason}"


@dataclass
class Demand:
    """Ready jobs packed as groups, plus those that fit nowhere."""

    groups: list[Group] = field(default_factory=list)
    unfit: list[Unfit] = field(default_factory=list)


def load_configs(session: Session, workflow_ids: list[int]) -> dict[int, list[Config]]:
    """Scheduler configs by workflow, in a stable order (slurm, local, aws; by key)."""
    found: dict[int, list[Config]] = defaultdict(list)
    if not workflow_ids:
        return found
    for collection, table in TABLES.items():
        for row in session.scalars(select(table).where(table.workflow_id.in_(workflow_ids))
                                   .order_by(table.id)):
            found[row.workflow_id].append(Config.of(collection, row))
    return found


@dataclass
class Alloc:
    """A scheduled compute node row, read as plain values (thousands per tick)."""

    id: int
    workflow_id: int
    scheduler_id: str | None
    scheduler_config_id: str
    status: str


def open_rows(session: Session) -> list[Alloc]:
    """Allocations not known to have ended, oldest first."""
    t = ScheduledComputeNode
    stmt = (select(t.id, t.workflow_id, t.scheduler_id, t.scheduler_config_id, t.status)
            .where(t.status.in_(OPEN)).order_by(t.id))  # type: ignore[attr-defined]
    return [Alloc(*row) for row in session.execute(stmt)]


@dataclass
class Snapshot:
    """Everything a tick reads about its workflows, in a handful of batched queries."""

    ready: dict[int, list[Any]] = field(default_factory=lambda: defaultdict(list))
    nodes: dict[int, list[ComputeNode]] = field(default_factory=lambda: defaultdict(list))
    used: dict[int, tuple[int, int, int]] = field(default_factory=dict)


_NEED = (Job.scheduler_config_id, Job.num_cpus, Job.memory_bytes, Job.num_gpus, Job.num_nodes,
         Job.runtime_seconds)


def snapshot(session: Session, workflow_ids: list[int]) -> Snapshot:
    """Ready jobs grouped by needs, active runners and what their jobs use, per workflow.

    Each query names the workflows, so it walks the (workflow_id, status) index instead of the
    whole jobs table.
    """
    snap = Snapshot()
    busy = [states.SUBMITTED_PENDING, states.SUBMITTED]
    for ids in chunks(workflow_ids):
        for row in session.execute(
                select(Job.workflow_id, *_NEED, func.count(), func.min(Job.id))
                .where(Job.workflow_id.in_(ids), Job.status == states.READY)  # type: ignore[attr-defined]
                .group_by(Job.workflow_id, *_NEED)):
            snap.ready[row[0]].append(row[1:])
        for node in session.scalars(select(ComputeNode).where(
                ComputeNode.workflow_id.in_(ids), ComputeNode.is_active.is_(True))  # type: ignore[attr-defined]
                .order_by(ComputeNode.id)):
            snap.nodes[node.workflow_id].append(node)
        if any(snap.nodes.get(i) for i in ids):
            for node_id, cpus, memory, gpus in session.execute(
                    select(Job.compute_node_id, func.sum(Job.num_cpus), func.sum(Job.memory_bytes),
                           func.sum(Job.num_gpus))
                    .where(Job.workflow_id.in_(ids), Job.status.in_(busy),  # type: ignore[attr-defined]
                           Job.compute_node_id.is_not(None))  # type: ignore[union-attr]
                    .group_by(Job.compute_node_id)):
                snap.used[node_id] = (int(cpus or 0), int(memory or 0), int(gpus or 0))
    return snap


def demand(workflow_id: int, ready: list[Any], configs: list[Config]) -> Demand:
    """Ready job groups routed to the configs that can run them; the rest are unfit."""
    by_id = {c.id: c for c in configs}
    out = Demand()
    for sched, cpus, memory, gpus, nodes, runtime, count, first in ready:
        need = Need(int(cpus), int(memory), int(gpus), int(nodes), float(runtime))
        sched = sched or None
        pool = [by_id[sched]] if sched in by_id else ([] if sched else configs)
        reasons, targets = [], []
        for cfg in pool:
            why = cfg.error or shape_reason(need, cfg.shape, cfg.id)  # type: ignore[arg-type]
            (reasons if why else targets).append(why or cfg.id)
        if targets:
            out.groups.append(Group(need, int(count), int(first), sched, targets))
            continue
        if not pool:
            reason = f"is assigned to {sched}, which workflow {workflow_id} does not have"
        elif len(reasons) == 1:
            reason = reasons[0]
        else:
            reason = "fits no scheduler config: " + "; ".join(reasons)
        revs = ",".join(f"{c.id}@{c.row.rev}" for c in pool) or str(sched)
        key = f"{revs}|{need.cpus}/{need.memory}/{need.gpus}/{need.nodes}/{need.runtime:g}"
        out.unfit.append(Unfit(key, int(first), int(count), reason))
    return out


def _remaining(node: ComputeNode, now: float) -> float:
    """Walltime left on a runner (its time limit counts from its start)."""
    limit = parse_time((node.resources or {}).get("time_limit"))
    if limit == INF:
        return INF
    try:
        return limit - max(0.0, now - datetime.fromisoformat(node.start_time).timestamp())
    except (TypeError, ValueError):
        return limit


def supply(now: float, nodes: list[ComputeNode], used: dict[int, tuple[int, int, int]],
           configs: list[Config], rows: list[Alloc]) -> list[Bin]:
    """Free room of active runners, then of allocations that have no runner yet."""
    bins: list[Bin] = []
    # Allocations that already have a runner: their room is the runner's, not the shape's.
    hosted: set[str] = set()
    for node in nodes:
        res = node.resources or {}
        cpus, memory, gpus = used.get(node.id, (0, 0, 0))
        bins.append(Bin(config_of(node), float(res.get("num_cpus", 0)) - cpus,
                        float(res.get("memory_gb", 0)) * GIB - memory,
                        float(res.get("num_gpus", 0)) - gpus,
                        int(res.get("num_nodes", 1)), _remaining(node, now), "active", node))
        hosted.add(allocation_of(node) or f"pid:{node.pid}")
    shapes = {c.id: c.shape for c in configs if c.shape is not None}
    for row in rows:
        shape = shapes.get(row.scheduler_config_id)
        sid = str(row.scheduler_id)
        if shape is None or sid in hosted or f"pid:{sid}" in hosted:
            continue
        kind = "queued" if row.status in QUEUED else "starting"
        bins.append(Bin.of(row.scheduler_config_id, shape, kind, row))
    return bins


def future_work(session: Session, workflow_ids: list[int]) -> dict[int, dict[str | None, int]]:
    """Blocked jobs by workflow and assigned config: work that will become ready by itself."""
    found: dict[int, dict[str | None, int]] = defaultdict(dict)
    for ids in chunks(workflow_ids):
        for wf, sched, n in session.execute(
                select(Job.workflow_id, Job.scheduler_config_id, func.count())
                .where(Job.workflow_id.in_(ids), Job.status == states.BLOCKED)  # type: ignore[attr-defined]
                .group_by(Job.workflow_id, Job.scheduler_config_id)):
            found[wf][sched or None] = int(n)
    return found
