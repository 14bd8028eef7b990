"""Claiming: hand ready jobs that fit a worker to exactly one compute node, atomically.

PostgreSQL: candidates are read `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait
for or get the same rows. SQLite: the caller's transaction is BEGIN IMMEDIATE (one writer).
Candidates stream from an index in claim order, a chunk at a time, never the whole ready set.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.completion import compute_node
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.initialize import JOBS
from hpcflow.engine.job_docs import render_jobs
from hpcflow.engine.statements import cached_statement, status_in, status_literal
from hpcflow.errors import Conflict, Invalid
from hpcflow.models import Job, WorkflowStatus
from hpcflow.models.nodes import NodeResources
from hpcflow.units import parse_duration

GIB = 1024**3
CHUNK = 500
SORTS = ("gpus_runtime_memory", "gpus_memory_runtime", "none")
MAX_LIMIT = 100_000
_C = JOBS.c
# Column order of each sort method (all descending after priority; key ascending last).
_ORDERS = {
    "gpus_runtime_memory": (_C.priority, _C.num_gpus, _C.runtime_seconds, _C.memory_bytes),
    "gpus_memory_runtime": (_C.priority, _C.num_gpus, _C.memory_bytes, _C.runtime_seconds),
    "none": (_C.priority,),
}
_FIELDS = (
    _C.id,
    _C.priority,
    _C.num_cpus,
    _C.num_gpus,
    _C.num_nodes,
    _C.memory_bytes,
    _C.runtime_seconds,
)


@dataclass
class Free:
    """What the worker still has to give; None means unlimited."""

    cpus: float = math.inf
    gpus: float = math.inf
    memory: float = math.inf
    nodes: float = math.inf
    runtime: float = math.inf

    def fits(self, row: Any) -> bool:
        """True when one job fits in what is left."""
        return (
            row.num_cpus <= self.cpus
            and row.num_gpus <= self.gpus
            and row.memory_bytes <= self.memory
            and row.num_nodes <= self.nodes
            and row.runtime_seconds <= self.runtime
        )

    def take(self, row: Any) -> None:
        """Subtract one job's needs (nodes and walltime are not consumed by a job)."""
        self.cpus -= row.num_cpus
        self.gpus -= row.num_gpus
        self.memory -= row.memory_bytes

    def exhausted(self) -> bool:
        """torc's stop rule: no CPUs or no memory left."""
        return self.cpus <= 0 or self.memory <= 0

    def limits(self) -> dict[str, float]:
        """The finite limits by job column: the SQL filters for jobs that fit."""
        pairs = (
            ("num_cpus", self.cpus),
            ("num_gpus", self.gpus),
            ("memory_bytes", self.memory),
            ("num_nodes", self.nodes),
            ("runtime_seconds", self.runtime),
        )
        return {name: value for name, value in pairs if value != math.inf}


class PerJob(Free):
    """A budget every job must fit on its own (a whole node); claiming consumes nothing."""

    def take(self, row: Any) -> None:
        """Nothing is used up: these jobs wait in the runner's queue, one node's worth each."""

    def exhausted(self) -> bool:
        """Never: the claim's limit bounds how many are taken."""
        return False


def free_from(resources: NodeResources) -> Free:
    """A worker's offer as a Free budget; a malformed time_limit is a 422."""
    runtime = math.inf
    if resources.time_limit not in (None, "", "null"):
        try:
            runtime = parse_duration(resources.time_limit)  # type: ignore[arg-type]
        except ValueError as exc:
            raise Invalid(f"time_limit: {exc}", field="time_limit") from None
    return Free(
        cpus=resources.num_cpus,
        gpus=resources.num_gpus,
        memory=math.floor(resources.memory_gb * GIB),
        nodes=resources.num_nodes,
        runtime=runtime,
    )


def _limit(limit: float | None, default: int) -> int:
    if limit is None:
        return default
    if limit < 0 or limit != int(limit) or limit > MAX_LIMIT:
        raise Invalid(
            f"limit must be a whole number from 0 to {MAX_LIMIT}, got {limit}", field="limit"
        )
    return int(limit)


def _node_id(session: Session, workflow_id: int, compute_node_key: str | None) -> int | None:
    return None if not compute_node_key else compute_node(session, workflow_id, compute_node_key).id


def is_canceled(session: Session, workflow_id: int) -> bool:
    return bool(
        session.scalar(
            select(WorkflowStatus.is_canceled).where(  # type: ignore[call-overload]
                WorkflowStatus.workflow_id == workflow_id
            )
        )
    )


def prepare_jobs_for_submission(
    session: Session,
    workflow: str | int,
    resources: NodeResources,
    sort_method: str | None = None,
    limit: float | None = None,
    compute_node_key: str | None = None,
) -> dict[str, Any]:
    """Claim ready jobs that fit the worker's free resources, best first, packed greedily."""
    wf = get_workflow(session, workflow)
    node = _node_id(session, wf.id, compute_node_key)
    jobs, reason = claim_fitting(session, wf.id, resources, sort_method, limit, node)
    return {"jobs": render_jobs(session, jobs), "reason": reason}


def claim_fitting(
    session: Session,
    workflow_id: int,
    resources: NodeResources,
    sort_method: str | None,
    limit: float | None,
    node_id: int | None,
    *,
    lookahead: int = 0,
    node_size: NodeResources | None = None,
    canceled: bool | None = None,
    scheduled: bool = True,
) -> tuple[list[Job], str]:
    """Claim jobs packed into `resources`, then up to `lookahead` more that each fit `node_size`.

    The lookahead jobs are a runner's queue (batch operations): submitted_pending on its node
    like every claimed job, started as its resources free up. Returns the jobs and, when none,
    why.
    """
    sort = sort_method or "gpus_runtime_memory"
    if sort not in SORTS:
        raise Invalid(
            f"sort_method must be one of {', '.join(SORTS)}, got {sort!r}", field="sort_method"
        )
    free = free_from(resources)
    sched = resources.scheduler_config_id or None
    wanted = _limit(limit, MAX_LIMIT)
    if is_canceled(session, workflow_id) if canceled is None else canceled:
        return [], f"workflow {workflow_id} is canceled"
    reason = (
        f"No jobs matched status in (ready, scheduled), memory_bytes <= {free.memory}, "
        f"num_cpus <= {free.cpus}, num_gpus <= {free.gpus}, runtime_seconds <= "
        f"{free.runtime}, num_nodes <= {free.nodes}, scheduler_config_id in (null, {sched})"
    )
    each = None
    if lookahead > 0 and node_size is not None:
        size = free_from(node_size)
        each = PerJob(
            cpus=size.cpus,
            gpus=size.gpus,
            memory=size.memory,
            nodes=size.nodes,
            runtime=free.runtime,
        )
    jobs = claim(
        session,
        workflow_id,
        free,
        sort,
        wanted,
        sched,
        node_id,
        check_fit=True,
        extra=each,
        extra_wanted=lookahead,
        scheduled=scheduled,
    )
    return jobs, "" if jobs else reason


def prepare_next_jobs_for_submission(
    session: Session,
    workflow: str | int,
    limit: float | None = 1,
    compute_node_key: str | None = None,
) -> dict[str, Any]:
    """Claim the next `limit` ready jobs, best first, with no resource check."""
    wf = get_workflow(session, workflow)
    wanted = _limit(limit, 1)
    node = _node_id(session, wf.id, compute_node_key)
    if is_canceled(session, wf.id):
        return {"jobs": []}
    jobs = claim(session, wf.id, Free(), "gpus_runtime_memory", wanted, None, node, check_fit=False)
    return {"jobs": render_jobs(session, jobs)}


def claim(
    session: Session,
    workflow_id: int,
    free: Free,
    sort: str,
    wanted: int,
    sched: str | None,
    node_id: int | None,
    *,
    check_fit: bool,
    extra: Free | None = None,
    extra_wanted: int = 0,
    scheduled: bool = True,
) -> list[Job]:
    """Pick and move jobs to submitted_pending; returns them in claim order.

    After `wanted` jobs packed into `free`, up to `extra_wanted` more that fit `extra` (a
    runner's lookahead queue) come from the same candidate reads. `scheduled=False` skips
    reading scheduled jobs (the caller knows there are none).
    """
    chosen: list[int] = []
    more: list[int] = []
    now = time.time()

    def main_open() -> bool:
        return len(chosen) < wanted and not (check_fit and free.exhausted())

    def extra_open() -> bool:
        return extra is not None and len(more) < extra_wanted

    # Start with about as many rows as the worker has CPUs, then read bigger chunks.
    step = max(16, int(min(free.cpus, CHUNK))) if check_fit else CHUNK
    while main_open() or extra_open():
        size = min(
            step,
            (wanted - len(chosen) if main_open() else 0)
            + (extra_wanted - len(more) if extra_open() else 0),
        )
        step = min(step * 4, CHUNK)
        # The looser budget filters the read: a lookahead job need only fit the whole node.
        budget = extra if extra is not None and extra_open() else free
        rows = _candidates(session, workflow_id, budget, sort, size, sched, check_fit, scheduled)
        picked = []
        for row in rows:
            if main_open() and (not check_fit or free.fits(row)):
                chosen.append(row.id)
                free.take(row)
            elif extra is not None and extra_open() and extra.fits(row):
                more.append(row.id)
            elif not (main_open() or extra_open()):
                break
            else:
                continue
            picked.append(row.id)
        if picked:
            params = {"ids": picked, "node": node_id, "now": now}
            done: Any = session.execute(cached_statement(session, "claim", _claim_update), params)
            moved = int(done.rowcount or 0)
            if moved != len(picked):  # cannot happen: the rows are locked or writes serialized
                raise Conflict(f"claim raced: {len(picked) - moved} jobs changed; retry")
        # Rows we skipped no longer fit what is left, so the next query cannot return them.
        if len(rows) < size:
            break
    ids = chosen + more
    if not ids:
        return []
    reload = cached_statement(session, "claimed", _claimed_jobs)
    loaded = {j.id: j for j in session.scalars(reload, {"ids": ids})}
    return [loaded[i] for i in ids]


def _claim_update(_dialect: str) -> Any:
    """Claimable jobs among `ids` to submitted_pending on `node` (through the state table).

    The ids come from this workflow's candidate read in the same transaction, so no workflow
    condition: with one, PostgreSQL planning from statistics taken before initialize_jobs made
    the jobs ready (autovacuum has not looked yet) walked ix_jobs_demand over every ready job
    of the workflow (5.8 ms at 4,000 ready jobs) instead of 16 primary-key lookups.
    """
    return (
        update(JOBS)
        .where(
            _C.id.in_(bindparam("ids", expanding=True)),
            status_in(_C.status, states.sources(states.SUBMITTED_PENDING, among=states.CLAIMABLE)),
        )
        .values(
            status=states.SUBMITTED_PENDING,
            rev=_C.rev + 1,
            compute_node_id=bindparam("node"),
            claimed_at=bindparam("now"),
        )
    )


def _claimed_jobs(_dialect: str) -> Any:
    """The claimed jobs, read anew (their rows changed under the session's objects)."""
    stmt = select(Job).where(_C.id.in_(bindparam("ids", expanding=True)))
    return stmt.execution_options(populate_existing=True)


def _candidates(
    session: Session,
    workflow_id: int,
    free: Free,
    sort: str,
    size: int,
    sched: str | None,
    check_fit: bool,
    scheduled: bool = True,
) -> list[Any]:
    """The best `size` claimable jobs that fit, merged over ready and scheduled (index order)."""
    limits = free.limits() if check_fit else {}
    params = {"wf": workflow_id, "sched": sched, "size": size, **limits}
    lists = [
        list(session.execute(_candidates_statement(session, sort, tuple(limits), sched, s), params))
        for s in (states.CLAIMABLE if scheduled else (states.READY,))
    ]
    if len(lists) == 1 or not lists[1]:
        return lists[0]

    def rank(row: Any) -> tuple[Any, ...]:
        return (*(-getattr(row, c.name) for c in _ORDERS[sort]), row.id)

    return list(heapq.merge(*lists, key=rank))[:size]


def _candidates_statement(
    session: Session, sort: str, limits: tuple[str, ...], sched: str | None, status: str
) -> Any:
    """The candidate read for one sort, status and set of finite limits, built once (bind
    parameters: wf, size, sched and each limit by its column name)."""

    def build(dialect: str) -> Any:
        order = _ORDERS[sort]
        keys = [c.desc() for c in order] + ([_C.id.asc()] if sort != "none" else [])
        same_sched = _C.scheduler_config_id.is_(None)
        if sched is not None:
            same_sched = same_sched | (_C.scheduler_config_id == bindparam("sched"))
        stmt = (
            select(*_FIELDS)
            .where(
                _C.workflow_id == bindparam("wf"),
                _C.status == status_literal(status),
                same_sched,
                *(_C[name] <= bindparam(name) for name in limits),
            )
            .order_by(*keys)
            .limit(bindparam("size"))
        )
        return stmt if dialect == "sqlite" else stmt.with_for_update(skip_locked=True)

    key = f"candidates:{sort}:{status}:{','.join(limits)}:{sched is not None}"
    return cached_statement(session, key, build)
