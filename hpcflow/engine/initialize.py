"""initialize_jobs: derive dependencies, count unfinished blockers, set blocked or ready.

Everything here is set-based SQL so a 100,000-job workflow initializes in a few statements.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session
from sqlmodel import col

from hpcflow.engine import bulk, states
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.events import post_event
from hpcflow.engine.job_docs import rr_internal
from hpcflow.engine.workflows import ensure_not_archived
from hpcflow.models import Edge, File, Job, ResourceRequirements, UserData

JOBS = Job.__table__  # type: ignore[attr-defined]
EDGES = Edge.__table__  # type: ignore[attr-defined]
CHUNK = 5000

# Jobs reachable from the seeds over blocks edges. The optional filter limits which jobs the
# walk may enter (for failure cascades: only blocked jobs that cancel on a blocker's failure).
_DOWNSTREAM = """
WITH RECURSIVE down(id) AS (
  SELECT e.to_id FROM edges e JOIN jobs j ON j.id = e.to_id
   WHERE e.workflow_id = :wf AND e.name = 'blocks' AND e.from_id IN {seeds} {filter}
  UNION
  SELECT e.to_id FROM down d JOIN edges e ON e.workflow_id = :wf AND e.name = 'blocks'
   AND e.from_id = d.id JOIN jobs j ON j.id = e.to_id
   WHERE 1 = 1 {filter}
)
SELECT id FROM down
"""
_CANCEL_FILTER = "AND j.cancel_on_blocking_job_failure = :flag AND j.status = 'blocked'"


def chunks(ids: Iterable[int], size: int = CHUNK) -> Iterator[list[int]]:
    """Split ids into lists small enough for one IN clause."""
    items = list(ids)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def downstream(
    session: Session, workflow_id: int, seeds: Iterable[int], *, cancel_cascade: bool = False
) -> set[int]:
    """Ids of every job downstream of the seeds (recursive CTE over blocks edges)."""
    found: set[int] = set()
    sql = _DOWNSTREAM.format(seeds=":seeds", filter=_CANCEL_FILTER if cancel_cascade else "")
    stmt = text(sql).bindparams(bindparam("seeds", expanding=True))
    params: dict[str, Any] = {"wf": workflow_id, "flag": True}
    for chunk in chunks(seeds):
        found.update(session.scalars(stmt, {**params, "seeds": chunk}))
    return found


def downstream_of_status(session: Session, workflow_id: int, status: str) -> set[int]:
    """Ids of every job downstream of a job that has `status`."""
    seeds = f"(SELECT id FROM jobs WHERE workflow_id = :wf AND status = '{status}')"
    sql = _DOWNSTREAM.format(seeds=seeds, filter="")
    return set(session.scalars(text(sql), {"wf": workflow_id}))


def initialize_jobs(
    session: Session,
    workflow: str | int,
    *,
    only_uninitialized: bool = False,
    clear_ephemeral_user_data: bool = True,
) -> dict[str, Any]:
    """Derive blocks edges, then make each job blocked (unfinished blockers) or ready."""
    wf = get_workflow(session, workflow)
    ensure_not_archived(wf)
    refresh_statistics(session)
    if clear_ephemeral_user_data:
        clear_ephemeral(session, wf.id)
    added = add_derived_edges(session, wf.id)
    refresh_requirements(session, wf.id)
    # A job that will rerun invalidates everything downstream of it.
    reset = uninitialize_downstream(session, wf.id)
    among = (states.UNINITIALIZED,) if only_uninitialized else states.REINITIALIZABLE
    blocked, ready = settle(session, wf.id, among)
    # PostgreSQL's statistics, taken before this, say none of these jobs is ready: claims and
    # key lookups then walk the workflow's whole index (1.8 ms at 22,000 jobs) until autovacuum
    # looks. SQLite plans them well without statistics of jobs.
    if bulk.is_postgres(session):
        bulk.refresh_stats(session, ready + blocked, Job)
    post_event(
        session,
        wf.id,
        "workflow",
        f"Initialized jobs: {ready} ready, {blocked} blocked",
        type="initialize",
        ready=ready,
        blocked=blocked,
        added_blocks_edges=added,
        uninitialized_downstream=reset,
        only_uninitialized=only_uninitialized,
    )
    return {
        "message": "Initialized job status",
        "num_ready": ready,
        "num_blocked": blocked,
        "num_added_blocks_edges": added,
    }


def refresh_statistics(session: Session, tables: tuple[str, ...] = ("jobs", "edges")) -> None:
    """PostgreSQL: ANALYZE tables that changed a lot since their last statistics.

    Right after a bulk load autovacuum has not looked yet; the planner then believes the new
    rows do not exist and picks nested loops over sequential scans (minutes at 100,000 jobs).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    stale = session.scalars(
        text(
            "SELECT relname FROM pg_stat_user_tables WHERE relname IN :names "
            "AND n_mod_since_analyze > 1000 + 0.1 * n_live_tup"
        ).bindparams(bindparam("names", expanding=True)),
        {"names": list(tables)},
    )
    for name in stale:
        session.execute(text(f'ANALYZE "{name}"'))


def clear_ephemeral(session: Session, workflow_id: int) -> int:
    """Empty the data of ephemeral user data (torc semantics: the keys are removed)."""
    rows = session.scalars(
        select(UserData).where(
            col(UserData.workflow_id) == workflow_id, col(UserData.is_ephemeral).is_(True)
        )
    )
    cleared = 0
    for ud in rows:
        if ud.data:
            ud.data = {}
            ud.rev += 1
            cleared += 1
    session.flush()
    return cleared


def add_derived_edges(session: Session, workflow_id: int) -> int:
    """Insert the missing blocks edges implied by files and user data; returns how many."""
    added = _derive(session, workflow_id, "produces", "needs", "files")
    return added + _derive(session, workflow_id, "stores", "consumes", "user_data")


def _derive(session: Session, wf: int, producer: str, consumer: str, coll: str) -> int:
    """One INSERT ... SELECT: producer of a document blocks its consumers, without duplicates."""
    p, n, b = EDGES.alias("p"), EDGES.alias("n"), EDGES.alias("b")
    already = exists().where(
        b.c.workflow_id == wf,
        b.c.name == "blocks",
        b.c.from_id == p.c.from_id,
        b.c.to_coll == "jobs",
        b.c.to_id == n.c.from_id,
    )
    pairs = (
        select(
            literal(wf),
            literal("blocks"),
            literal("jobs"),
            p.c.from_id,
            literal("jobs"),
            n.c.from_id,
            literal(1),
        )
        .distinct()
        .select_from(
            p.join(
                n,
                and_(
                    n.c.workflow_id == wf,
                    n.c.name == consumer,
                    n.c.to_coll == coll,
                    n.c.to_id == p.c.to_id,
                ),
            )
        )
        .where(
            p.c.workflow_id == wf,
            p.c.name == producer,
            p.c.to_coll == coll,
            p.c.from_id != n.c.from_id,
            ~already,
        )
    )
    cols = ["workflow_id", "name", "from_coll", "from_id", "to_coll", "to_id", "rev"]
    result = session.execute(
        insert(EDGES).from_select(cols, pairs), execution_options={"preserve_rowcount": True}
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def refresh_requirements(session: Session, workflow_id: int) -> None:
    """Copy each resource-requirements document's numbers onto the jobs that require it."""
    params = []
    for rr in session.scalars(
        select(ResourceRequirements).where(col(ResourceRequirements.workflow_id) == workflow_id)
    ):
        values = rr_internal(rr)
        params.append({"rr": rr.id, **{f"v_{k}": v for k, v in values.items()}})
    if not params:
        return
    names = ("num_cpus", "num_gpus", "num_nodes", "memory_bytes", "runtime_seconds")
    users = select(EDGES.c.from_id).where(
        EDGES.c.workflow_id == workflow_id,
        EDGES.c.name == "requires",
        EDGES.c.to_id == bindparam("rr"),
    )
    stale = or_(*(JOBS.c[n] != bindparam(f"v_{n}") for n in names))
    stmt = (
        update(JOBS)
        .where(JOBS.c.workflow_id == workflow_id, JOBS.c.id.in_(users), stale)
        .values({n: bindparam(f"v_{n}") for n in names})
    )
    session.execute(stmt, params)


def uninitialize_downstream(session: Session, workflow_id: int) -> int:
    """Reset jobs downstream of an uninitialized job (skipped when nothing has run)."""
    started = session.scalar(
        select(JOBS.c.id)
        .where(
            JOBS.c.workflow_id == workflow_id,
            JOBS.c.status.not_in([states.UNINITIALIZED, states.DISABLED]),
        )
        .limit(1)
    )
    if started is None:
        return 0
    ids = downstream_of_status(session, workflow_id, states.UNINITIALIZED)
    return set_status_many(
        session,
        workflow_id,
        states.UNINITIALIZED,
        ids,
        among=[s for s in states.STATUSES if s != states.DISABLED],
    )


def set_status_many(
    session: Session, workflow_id: int, new: str, ids: Iterable[int], **kwargs: Any
) -> int:
    """states.set_status over a possibly large id set, one IN clause per chunk."""
    return sum(
        states.set_status(session, workflow_id, new, JOBS.c.id.in_(chunk), **kwargs)
        for chunk in chunks(sorted(ids))
    )


def settle(session: Session, workflow_id: int, among: Iterable[str]) -> tuple[int, int]:
    """Count each job's unfinished blockers and make it blocked or ready; returns both counts.

    Blockers in `among` count as unfinished: they are being (re)initialized too. Every job in
    `among` gets its count; its status changes where the table allows. Four UPDATEs over
    disjoint jobs write each row once: counting first and then setting statuses wrote every job
    twice, and the count's correlated subquery probed the edges once per job (5.2 of 10.5 s of
    initialize_jobs at 100,000 jobs on PostgreSQL).
    """
    among = list(among)
    finished = [s for s in states.FINISHED if s not in among]
    to_blocked = states.sources(states.BLOCKED, among)
    to_ready = states.sources(states.READY, among)
    blocker = JOBS.alias("b")
    blocking = EDGES.join(blocker, blocker.c.id == EDGES.c.from_id)
    unfinished = (
        EDGES.c.workflow_id == workflow_id,
        EDGES.c.name == "blocks",
        blocker.c.status.not_in(finished),
    )
    counts = (
        select(EDGES.c.to_id, func.count().label("n"))
        .select_from(blocking)
        .where(*unfinished)
        .group_by(EDGES.c.to_id)
        .subquery("counts")
    )
    # NOT EXISTS, not NOT IN: PostgreSQL turns it into an anti-join at any size.
    held = exists().select_from(blocking).where(*unfinished, EDGES.c.to_id == JOBS.c.id)
    mine = (JOBS.c.workflow_id == workflow_id,)

    def run(stmt: Any) -> int:
        done = session.execute(stmt.execution_options(synchronize_session=False))
        return int(done.rowcount or 0)  # type: ignore[attr-defined]

    # Jobs that keep their status go first: afterwards their status filter would also match
    # (and write again) the jobs that have just become blocked or ready.
    with_blockers = update(JOBS).where(*mine, JOBS.c.id == counts.c.to_id)
    free = update(JOBS).where(*mine, ~held)
    kept = [s for s in among if s not in to_blocked]
    if _any_in(session, workflow_id, kept):  # none on a first initialization
        run(with_blockers.where(JOBS.c.status.in_(kept)).values(blocked_count=counts.c.n))
    kept = [s for s in among if s not in to_ready]
    if _any_in(session, workflow_id, kept):
        run(free.where(JOBS.c.status.in_(kept), JOBS.c.blocked_count != 0).values(blocked_count=0))
    blocked = run(
        with_blockers.where(JOBS.c.status.in_(to_blocked)).values(
            blocked_count=counts.c.n, status=states.BLOCKED, rev=JOBS.c.rev + 1
        )
    )
    ready = run(
        free.where(JOBS.c.status.in_(to_ready)).values(
            blocked_count=0, status=states.READY, rev=JOBS.c.rev + 1
        )
    )
    return blocked, ready


def _any_in(session: Session, workflow_id: int, statuses: list[str]) -> bool:
    """True when some job of the workflow has one of `statuses`."""
    if not statuses:
        return False
    found = select(JOBS.c.id).where(JOBS.c.workflow_id == workflow_id, JOBS.c.status.in_(statuses))
    return session.scalar(found.limit(1)) is not None


def list_required_existing_files(session: Session, workflow: str | int) -> dict[str, Any]:
    """Files some job needs, no job produces, and that are missing on the server's disk."""
    wf = get_workflow(session, workflow)
    p = EDGES.alias("p")
    produced = exists().where(
        p.c.workflow_id == wf.id,
        p.c.name == "produces",
        p.c.to_coll == "files",
        p.c.to_id == EDGES.c.to_id,
    )
    needed = (
        select(col(File.id), col(File.path))
        .distinct()
        .join(EDGES, and_(EDGES.c.to_id == File.id, EDGES.c.to_coll == "files"))
        .where(EDGES.c.workflow_id == wf.id, EDGES.c.name == "needs", ~produced)
    )
    missing = sorted(key for key, path in session.execute(needed) if not os.path.exists(path))
    return {"files": [str(k) for k in missing]}


def list_missing_user_data(session: Session, workflow: str | int) -> dict[str, Any]:
    """Consumed user data that has no data yet but should: user-supplied or stored by a done job."""
    wf = get_workflow(session, workflow)
    s = EDGES.alias("s")
    producer = JOBS.alias("pj")
    stored = exists().where(
        s.c.workflow_id == wf.id, s.c.name == "stores", s.c.to_id == EDGES.c.to_id
    )
    stored_by_done = exists().where(
        s.c.workflow_id == wf.id,
        s.c.name == "stores",
        s.c.to_id == EDGES.c.to_id,
        producer.c.id == s.c.from_id,
        producer.c.status == states.DONE,
    )
    ids = list(
        session.scalars(
            select(EDGES.c.to_id)
            .distinct()
            .where(
                EDGES.c.workflow_id == wf.id,
                EDGES.c.name == "consumes",
                or_(~stored, stored_by_done),
            )
        )
    )
    missing = []
    for chunk in chunks(ids):
        for key, data in session.execute(
            select(col(UserData.id), col(UserData.data)).where(col(UserData.id).in_(chunk))
        ):
            if not data:
                missing.append(key)
    return {"user_data": [str(k) for k in sorted(missing)]}
