"""Edges by hand: list, add, get, remove, with checked endpoints and derived job columns.

Some job columns are derived from edges: a requires edge sets the job's claim-time resource
numbers, a scheduled_bys edge its scheduler_config_id, and blocks edges its blocked_count (the
number of unfinished blockers, which completion decrements; see engine/initialize.py). Changing
those edges here keeps the columns in step:

- blocks: the target's counter is recounted from its edges (only a blocked or ready job has a
  live counter; initialize_jobs recounts the rest), and the job becomes blocked or ready to
  match. Refused (409) are edges that would make a cycle, and new unfinished blockers of a job
  that is already claimed or running (it cannot wait any more).
- requires / scheduled_bys: a job has at most one of each (409 for a second; use PUT
  .../jobs/{key}/resource_requirements/{rr_key} to switch); removing one restores the defaults.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.bulk import table_of
from hpcflow.engine.documents import create_doc
from hpcflow.engine.initialize import EDGES, JOBS, chunks, downstream
from hpcflow.engine.job_docs import DEFAULT_INTERNAL, rr_internal
from hpcflow.errors import Conflict, Invalid, NotFound
from hpcflow.keys import parse_key, parse_ref
from hpcflow.models import (
    EDGE_COLLECTIONS,
    AwsScheduler,
    ComputeNode,
    ComputeNodeStats,
    Edge,
    Event,
    File,
    Job,
    JobProcessStats,
    LocalScheduler,
    ResourceRequirements,
    Result,
    ScheduledComputeNode,
    SlurmScheduler,
    UserData,
)
from hpcflow.models.base import Doc
from hpcflow.models.graph import EdgeIn

# Every document collection an edge may touch or a join may start from.
VERTICES: dict[str, type[Doc]] = {
    t.collection: t
    for t in (
        AwsScheduler,
        ComputeNode,
        ComputeNodeStats,
        Event,
        File,
        Job,
        JobProcessStats,
        LocalScheduler,
        ResourceRequirements,
        Result,
        ScheduledComputeNode,
        SlurmScheduler,
        UserData,
    )
}
RRS = table_of(ResourceRequirements)
# Jobs that have been handed to a runner: they can no longer wait for a new blocker.
CLAIMED = (states.SCHEDULED, states.SUBMITTED_PENDING, states.SUBMITTED)
_NUMBERS = ("num_cpus", "num_gpus", "num_nodes", "memory_bytes", "runtime_seconds")


def check_name(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The allowed (_from, _to) collections of an edge collection, or 422 listing the names."""
    if name not in EDGE_COLLECTIONS:
        raise Invalid(
            f"unknown edge collection {name!r}; use one of: " + ", ".join(sorted(EDGE_COLLECTIONS)),
            field="name",
        )
    return EDGE_COLLECTIONS[name]


def endpoint(
    session: Session, workflow_id: int, name: str, ref: Any, allowed: tuple[str, ...], side: str
) -> tuple[str, int]:
    """Parse and check one end of an edge: an _id of an existing document of this workflow."""
    where = f"{name} edge {side}"
    if not isinstance(ref, str) or not ref:
        raise Invalid(f"{where}: must be a document _id like '{allowed[0]}/<key>'", field=side)
    try:
        coll, key = parse_ref(ref, allowed, where)
    except Invalid as exc:
        raise Invalid(exc.message, field=side) from None
    row = session.get(VERTICES[coll], key)
    if row is None or getattr(row, "workflow_id", None) != workflow_id:
        raise Invalid(f"{where}: {coll}/{key} does not exist in workflow {workflow_id}", field=side)
    return coll, key


def list_edges(
    session: Session, workflow_id: int, name: str, skip: int, limit: int
) -> tuple[list[Edge], int]:
    """A page of one edge collection in key order, with its total size."""
    check_name(name)
    where = (EDGES.c.workflow_id == workflow_id, EDGES.c.name == name)
    total = session.scalar(select(func.count()).select_from(EDGES).where(*where)) or 0
    rows = session.scalars(
        select(Edge).where(*where).order_by(EDGES.c.id).offset(skip).limit(limit)
    )
    return list(rows), int(total)


def get_edge(session: Session, workflow_id: int, name: str, key: str) -> Edge:
    """One edge of the named collection, or 404."""
    check_name(name)
    row = session.get(Edge, parse_key(key, "key"))
    if row is None or row.workflow_id != workflow_id or row.name != name:
        raise NotFound(f"{name} edge {key!r} not found in workflow {workflow_id}", field="key")
    return row


def add_edge(session: Session, workflow_id: int, name: str, body: EdgeIn) -> Edge:
    """Store a checked edge and bring the derived job columns in step."""
    froms, tos = check_name(name)
    src_coll, src = endpoint(session, workflow_id, name, body.from_, froms, "_from")
    dst_coll, dst = endpoint(session, workflow_id, name, body.to, tos, "_to")
    existing = session.scalar(
        select(EDGES.c.id).where(
            EDGES.c.workflow_id == workflow_id,
            EDGES.c.name == name,
            EDGES.c.from_coll == src_coll,
            EDGES.c.from_id == src,
            EDGES.c.to_coll == dst_coll,
            EDGES.c.to_id == dst,
        )
    )
    if existing is not None:
        raise Conflict(
            f"{name} edge {src_coll}/{src} -> {dst_coll}/{dst} already exists (_key {existing})",
            field="_to",
        )
    if name == "blocks":
        _check_new_blocker(session, workflow_id, src, dst)
    elif name in ("requires", "scheduled_bys"):
        other = _target(session, workflow_id, name, [src]).get(src)
        if other is not None:
            hint = (
                " (use PUT /workflows/{workflow}/jobs/{key}/resource_requirements/{rr_key} "
                "to switch)"
                if name == "requires"
                else "; remove that edge first"
            )
            raise Conflict(f"jobs/{src} already has a {name} edge to {other}{hint}", field="_from")
    values: dict[str, Any] = {
        "name": name,
        "from_coll": src_coll,
        "from_id": src,
        "to_coll": dst_coll,
        "to_id": dst,
        "data": body.data,
    }
    if body.key is not None:
        values["key"] = body.key
    row = create_doc(session, Edge, workflow_id, values)
    _after_change(session, workflow_id, name, [(src, dst_coll, dst)])
    return row


def _target(session: Session, workflow_id: int, name: str, job_ids: list[int]) -> dict[int, str]:
    """job -> _id of the document its (single) `name` edge points at."""
    return {
        src: f"{coll}/{dst}"
        for src, coll, dst in session.execute(
            select(EDGES.c.from_id, EDGES.c.to_coll, EDGES.c.to_id).where(
                EDGES.c.workflow_id == workflow_id,
                EDGES.c.name == name,
                EDGES.c.from_id.in_(job_ids),
            )
        )
    }


def _check_new_blocker(session: Session, workflow_id: int, src: int, dst: int) -> None:
    if src == dst:
        raise Invalid(f"blocks edge: job {src} cannot block itself", field="_to")
    if src in downstream(session, workflow_id, [dst]):
        raise Invalid(
            f"blocks edge jobs/{src} -> jobs/{dst} would make a cycle: job {src} "
            f"already waits for job {dst}",
            field="_to",
        )
    blocker = session.get(Job, src)
    target = session.get(Job, dst)
    assert blocker is not None and target is not None
    if target.status in CLAIMED and blocker.status not in states.FINISHED:
        raise Conflict(
            f"job {dst} is {target.status}: it cannot wait for job {src} "
            f"({blocker.status}); reset it to uninitialized first",
            field="_to",
        )


def remove_edge(session: Session, workflow_id: int, name: str, key: str) -> dict[str, Any]:
    """Delete one edge; returns it."""
    row = get_edge(session, workflow_id, name, key)
    doc = row.to_doc()
    touched = [(row.from_id, row.to_coll, row.to_id)]
    session.delete(row)
    session.flush()
    _after_change(session, workflow_id, name, touched)
    return doc


def delete_edges(session: Session, workflow_id: int, name: str) -> int:
    """Delete a whole edge collection of the workflow; returns how many edges went."""
    check_name(name)
    touched = [
        (s, c, d)
        for s, c, d in session.execute(
            select(EDGES.c.from_id, EDGES.c.to_coll, EDGES.c.to_id).where(
                EDGES.c.workflow_id == workflow_id, EDGES.c.name == name
            )
        )
    ]
    session.execute(delete(EDGES).where(EDGES.c.workflow_id == workflow_id, EDGES.c.name == name))
    _after_change(session, workflow_id, name, touched)
    return len(touched)


def _after_change(
    session: Session, workflow_id: int, name: str, touched: list[tuple[int, str, int]]
) -> None:
    """Recompute the job columns derived from the edges that were added or removed."""
    if name == "blocks":
        recount(session, workflow_id, {dst for _s, _c, dst in touched})
    elif name == "requires":
        set_requirements(session, workflow_id, {src for src, _c, _d in touched})
    elif name == "scheduled_bys":
        for chunk in chunks(sorted({src for src, _c, _d in touched})):
            current = _target(session, workflow_id, name, chunk)
            for job_id in chunk:
                session.execute(
                    update(JOBS)
                    .where(JOBS.c.id == job_id)
                    .values(scheduler_config_id=current.get(job_id), rev=JOBS.c.rev + 1)
                )


def set_requirements(session: Session, workflow_id: int, job_ids: set[int]) -> None:
    """Copy each job's current resource requirements (or the defaults) onto the job."""
    for chunk in chunks(sorted(job_ids)):
        rr_of: dict[int, int] = {
            job: rr
            for job, rr in session.execute(
                select(EDGES.c.from_id, EDGES.c.to_id).where(
                    EDGES.c.workflow_id == workflow_id,
                    EDGES.c.name == "requires",
                    EDGES.c.from_id.in_(chunk),
                )
            )
        }
        rrs = {
            rr.id: rr_internal(rr)
            for rr in session.scalars(
                select(ResourceRequirements).where(RRS.c.id.in_(set(rr_of.values())))
            )
        }
        for job_id in chunk:
            numbers = (
                rrs[rr_of[job_id]]
                if job_id in rr_of
                else {n: DEFAULT_INTERNAL[n] for n in _NUMBERS}
            )
            session.execute(
                update(JOBS).where(JOBS.c.id == job_id).values(**numbers, rev=JOBS.c.rev + 1)
            )


def recount(session: Session, workflow_id: int, job_ids: set[int]) -> None:
    """Recount the unfinished blockers of blocked or ready jobs and set their status to match."""
    blocker = JOBS.alias("b")
    pairs = EDGES.join(blocker, blocker.c.id == EDGES.c.from_id)
    unfinished = (
        select(func.count())
        .select_from(pairs)
        .where(
            EDGES.c.workflow_id == workflow_id,
            EDGES.c.name == "blocks",
            EDGES.c.to_id == JOBS.c.id,
            blocker.c.status.not_in(states.FINISHED),
        )
        .scalar_subquery()
    )
    live = [states.BLOCKED, states.READY]
    for chunk in chunks(sorted(job_ids)):
        mine = JOBS.c.id.in_(chunk)
        session.execute(
            update(JOBS)
            .where(JOBS.c.workflow_id == workflow_id, mine, JOBS.c.status.in_(live))
            .values(blocked_count=unfinished)
        )
        states.set_status(
            session,
            workflow_id,
            states.BLOCKED,
            mine,
            JOBS.c.blocked_count > 0,
            among=[states.READY],
        )
        states.set_status(
            session,
            workflow_id,
            states.READY,
            mine,
            JOBS.c.blocked_count == 0,
            among=[states.BLOCKED],
        )
