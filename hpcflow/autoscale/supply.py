"""Reading one workflow for a tick: its scheduler configs, ready demand and node supply."""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcflow.autoscale.demand import GIB, INF, Bin, Group, Need, Shape, config_shape, parse_time
from hpcflow.autoscale.demand import unfit_reason as shape_reason
from hpcflow.autoscale.recovery import allocation_of, config_of
from hpcflow.autoscale.sets import among
from hpcflow.engine import states
from hpcflow.models import ComputeNode, Job, ScheduledComputeNode
from hpcflow.models.schedulers import AwsScheduler, LocalScheduler, SlurmScheduler

TABLES: dict[str, Any] = {
    "slurm_schedulers": SlurmScheduler,
    "local_schedulers": LocalScheduler,
    "aws_schedulers": AwsScheduler,
}
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
        fields = _SHAPE.get(collection)
        try:
            if fields is None:
                shape = config_shape(collection, row)
            else:  # thousands of configs share a handful of shapes
                shape = _shape(collection, tuple(getattr(row, f, None) for f in fields))
            return cls(collection, row, shape, None, ident, kind)
        except ValueError as exc:
            return cls(collection, row, None, str(exc).replace("/?", f"/{row.id}"), ident, kind)


@functools.lru_cache(maxsize=4096)
def _shape(collection: str, values: tuple[Any, ...]) -> Shape:
    """config_shape of the planning columns (cached: the same values, the same shape)."""
    row = SimpleNamespace(id="?", **dict(zip(_SHAPE[collection], values, strict=True)))
    return config_shape(collection, row)


@dataclass
class Unfit:
    """Ready jobs that no node of any usable config can run, and why."""

    key: str
    # Looked up only when the event is posted (demand reads counts, not job ids).
    first_job: int | None
    count: int
    reason: str
    need: Need | None = None
    config_id: str | None = None

    def message(self) -> str:
        """'job 12 needs 512 GB; the largest node of slurm_schedulers/3 has 256 GB'."""
        more = f" (and {self.count - 1} more like it)" if self.count > 1 else ""
        return f"job {self.first_job}{more} {self.reason}"


@dataclass
class Demand:
    """Ready jobs packed as groups, plus those that fit nowhere."""

    groups: list[Group] = field(default_factory=list)
    unfit: list[Unfit] = field(default_factory=list)


# What planning reads of a config: limits and the node shape. The whole document (templates,
# extra options, tags) is read only when a node is launched.
_COMMON = ("id", "workflow_id", "rev", "name", "max_nodes", "max_queued", "is_paused")
_SHAPE = {
    "slurm_schedulers": (
        "ntasks_per_node",
        "cpus_per_task",
        "gpus",
        "gres",
        "mem",
        "nodes",
        "walltime",
    ),
    "local_schedulers": ("memory", "num_cpus"),
    "aws_schedulers": ("memory", "num_cpus", "num_gpus", "walltime"),
}


class ConfigRow:
    """The planning columns of a scheduler config row as attributes (Core: no ORM per tick)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def load_configs(session: Session, workflow_ids: list[int]) -> dict[int, list[Config]]:
    """Scheduler configs by workflow, in a stable order (slurm, local, aws; by key)."""
    found: dict[int, list[Config]] = defaultdict(list)
    if not workflow_ids:
        return found
    for collection, model in TABLES.items():
        table = model.__table__
        names = (*_COMMON, *_SHAPE[collection])
        columns = [table.c[n] for n in names]
        for values in session.execute(
            select(*columns)
            .where(among(session, table.c.workflow_id, workflow_ids))
            .order_by(table.c.id)
        ).all():
            fields = dict(zip(names, values, strict=True))
            found[fields["workflow_id"]].append(Config.of(collection, ConfigRow(fields)))
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
    t = ScheduledComputeNode.__table__.c  # type: ignore[attr-defined]
    stmt = (
        select(t.id, t.workflow_id, t.scheduler_id, t.scheduler_config_id, t.status)
        .where(t.status.in_(OPEN))
        .order_by(t.id)
    )
    return [Alloc(*row) for row in session.execute(stmt).all()]


@dataclass
class Snapshot:
    """Everything a tick reads about its workflows, in a handful of batched queries."""

    ready: dict[int, list[Any]] = field(default_factory=lambda: defaultdict(list))
    nodes: dict[int, list[Any]] = field(default_factory=lambda: defaultdict(list))
    used: dict[int, tuple[int, int, int]] = field(default_factory=dict)


_J = Job.__table__.c  # type: ignore[attr-defined]
_N = ComputeNode.__table__  # type: ignore[attr-defined]
_NEED = (
    _J.scheduler_config_id,
    _J.num_cpus,
    _J.memory_bytes,
    _J.num_gpus,
    _J.num_nodes,
    _J.runtime_seconds,
)


def snapshot(session: Session, workflow_ids: list[int], nodes: list[Any] | None = None) -> Snapshot:
    """Ready jobs grouped by needs, active runners and what their jobs use, per workflow.

    `nodes` are the active compute nodes when the caller read them already.

    Each query names the workflows, so it walks the (workflow_id, status) index instead of the
    whole jobs table.
    """
    snap = Snapshot()
    if not workflow_ids:
        return snap
    # Only indexed columns (ix_jobs_demand): an index-only scan, no table row per ready job.
    for row in session.execute(
        select(_J.workflow_id, *_NEED, func.count())
        .where(among(session, _J.workflow_id, workflow_ids), _J.status == states.READY)
        .group_by(_J.workflow_id, *_NEED)
    ).all():
        snap.ready[row[0]].append(row[1:])
    # Rows, not ORM objects: supply() reads the same attributes off either.
    if nodes is None:
        nodes = list(
            session.execute(
                select(_N)
                .where(among(session, _N.c.workflow_id, workflow_ids), _N.c.is_active.is_(True))
                .order_by(_N.c.id)
            ).all()
        )
    wanted = set(workflow_ids)
    for node in nodes:
        if node.workflow_id in wanted:
            snap.nodes[node.workflow_id].append(node)
    runner_use(session, snap, workflow_ids)
    return snap


def _offer(node: Any) -> tuple[float, float, float]:
    res = node.resources or {}
    return (
        float(res.get("num_cpus", 0)),
        float(res.get("memory_gb", 0)) * GIB,
        float(res.get("num_gpus", 0)),
    )


def runner_use(session: Session, snap: Snapshot, ids: list[int]) -> None:
    """What the jobs of each active runner use, where it can matter.

    Per-runner sums need the jobs' rows (no index has compute_node_id); per-workflow sums come
    from the demand index alone. A workflow whose runners together have no room for its
    smallest ready job has full runners, which is the usual state of a busy cluster: only the
    others are read runner by runner.
    """
    busy = [states.SUBMITTED_PENDING, states.SUBMITTED]
    wanted = [w for w in ids if snap.nodes.get(w) and snap.ready.get(w)]
    if not wanted:
        return
    pooled = {
        wf: (float(c or 0), float(m or 0), float(g or 0))
        for wf, c, m, g in session.execute(
            select(
                _J.workflow_id,
                func.sum(_J.num_cpus),
                func.sum(_J.memory_bytes),
                func.sum(_J.num_gpus),
            )
            .where(among(session, _J.workflow_id, wanted), _J.status.in_(busy))
            .group_by(_J.workflow_id)
        ).all()
    }
    exact = []
    for wf in wanted:
        offers = [_offer(n) for n in snap.nodes[wf]]
        used = pooled.get(wf, (0.0, 0.0, 0.0))
        free = [sum(o[i] for o in offers) - used[i] for i in range(3)]
        if any(
            c <= free[0] and m <= free[1] and g <= free[2]
            for _sched, c, m, g, *_rest in snap.ready[wf]
        ):
            exact.append(wf)
            continue
        for node, offer in zip(snap.nodes[wf], offers, strict=True):
            snap.used[node.id] = (int(offer[0]), int(offer[1]), int(offer[2]))
    if exact:
        for node_id, cpus, memory, gpus in session.execute(
            select(
                _J.compute_node_id,
                func.sum(_J.num_cpus),
                func.sum(_J.memory_bytes),
                func.sum(_J.num_gpus),
            )
            .where(
                among(session, _J.workflow_id, exact),
                _J.status.in_(busy),
                _J.compute_node_id.is_not(None),
            )
            .group_by(_J.compute_node_id)
        ).all():
            snap.used[node_id] = (int(cpus or 0), int(memory or 0), int(gpus or 0))


def demand(workflow_id: int, ready: list[Any], configs: list[Config]) -> Demand:
    """Ready job groups routed to the configs that can run them; the rest are unfit."""
    by_id = {c.id: c for c in configs}
    out = Demand()
    for sched, cpus, memory, gpus, nodes, runtime, count in ready:
        need = Need(int(cpus), int(memory), int(gpus), int(nodes), float(runtime))
        sched = sched or None
        pool = [by_id[sched]] if sched in by_id else ([] if sched else configs)
        reasons: list[str] = []
        targets: list[str] = []
        for cfg in pool:
            why = cfg.error or shape_reason(need, cfg.shape, cfg.id)  # type: ignore[arg-type]
            (reasons if why else targets).append(why or cfg.id)
        if targets:
            out.groups.append(Group(need, int(count), 0, sched, targets))
            continue
        if not pool:
            reason = f"is assigned to {sched}, which workflow {workflow_id} does not have"
        elif len(reasons) == 1:
            reason = reasons[0]
        else:
            reason = "fits no scheduler config: " + "; ".join(reasons)
        revs = ",".join(f"{c.id}@{c.row.rev}" for c in pool) or str(sched)
        key = f"{revs}|{need.cpus}/{need.memory}/{need.gpus}/{need.nodes}/{need.runtime:g}"
        out.unfit.append(Unfit(key, None, int(count), reason, need, sched))
    return out


def _remaining(node: Any, now: float) -> float:
    """Walltime left on a runner (its time limit counts from its start)."""
    limit = parse_time((node.resources or {}).get("time_limit"))
    if limit == INF:
        return INF
    try:
        return limit - max(0.0, now - datetime.fromisoformat(node.start_time).timestamp())
    except (TypeError, ValueError):
        return limit


def supply(
    now: float,
    nodes: list[Any],
    used: dict[int, tuple[int, int, int]],
    configs: list[Config],
    rows: list[Alloc],
) -> list[Bin]:
    """Free room of active runners, then of allocations that have no runner yet."""
    bins: list[Bin] = []
    # Allocations that already have a runner: their room is the runner's, not the shape's.
    hosted: set[str] = set()
    for node in nodes:
        res = node.resources or {}
        cpus, memory, gpus = used.get(node.id, (0, 0, 0))
        bins.append(
            Bin(
                config_of(node),
                float(res.get("num_cpus", 0)) - cpus,
                float(res.get("memory_gb", 0)) * GIB - memory,
                float(res.get("num_gpus", 0)) - gpus,
                int(res.get("num_nodes", 1)),
                _remaining(node, now),
                "active",
                node,
            )
        )
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
    if not workflow_ids:
        return found
    for wf, sched, n in session.execute(
        select(_J.workflow_id, _J.scheduler_config_id, func.count())
        .where(among(session, _J.workflow_id, workflow_ids), _J.status == states.BLOCKED)
        .group_by(_J.workflow_id, _J.scheduler_config_id)
    ).all():
        found[wf][sched or None] = int(n)
    return found
