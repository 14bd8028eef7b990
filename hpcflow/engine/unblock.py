"""Unblocking: a finished job releases its direct dependents, a failed one cancels its cascade."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.initialize import EDGES, JOBS, chunks, downstream, set_status_many
from hpcflow.engine.statements import cached_statement, status_literal


def release_dependents(
    session: Session, workflow_id: int, finished: Mapping[int, bool]
) -> dict[int, set[int]]:
    """Decrement the direct dependents' counters of newly finished jobs (id -> failed).

    A failed job first cancels its cascade (dependents that cancel on a blocker's failure);
    every newly finished job, canceled ones included, releases one count of each dependent.
    Dependents are fetched by key and updated by primary key: no scan of the workflow.
    Returns the canceled cascade of each failed job.
    """
    cascades = {
        job: downstream(session, workflow_id, [job], cancel_cascade=True)
        for job, failed in sorted(finished.items())
        if failed
    }
    canceled = set().union(*cascades.values()) - set(finished)
    set_status_many(session, workflow_id, states.CANCELED, canceled, among=[states.BLOCKED])
    released: Counter[int] = Counter()
    deps_of = cached_statement(
        session,
        "dependents",
        lambda _d: select(EDGES.c.to_id).where(
            EDGES.c.workflow_id == bindparam("wf"),
            EDGES.c.name == "blocks",
            EDGES.c.from_id.in_(bindparam("ids", expanding=True)),
        ),
    )
    for chunk in chunks(sorted({*finished, *canceled})):
        for dep in session.scalars(deps_of, {"wf": workflow_id, "ids": chunk}):
            if dep not in canceled:
                released[dep] += 1
    if not released:
        return cascades
    deps = sorted(released)
    if session.get_bind().dialect.name != "sqlite":
        for chunk in chunks(deps):
            _lock_in_order(session, JOBS.c.id.in_(chunk))
    by_count: dict[int, list[int]] = {}
    for dep in deps:
        by_count.setdefault(released[dep], []).append(dep)
    for n, ids in sorted(by_count.items()):
        for chunk in chunks(ids):
            params = {"ids": chunk, "wf": workflow_id, "n": n}
            session.execute(cached_statement(session, "release", _release_update), params)
    return cascades


def _release_update(_dialect: str) -> Any:
    """Decrement dependents' counters by n and make those reaching zero ready, in one UPDATE
    (the right-hand sides read the old row, so both tests see the count before the change)."""
    states.check(states.BLOCKED, states.READY)  # the one transition this statement makes
    n: Any = bindparam("n")
    count = JOBS.c.blocked_count
    blocked = JOBS.c.status == status_literal(states.BLOCKED)
    unblocks = (count <= n) & blocked
    return (
        update(JOBS)
        .where(
            JOBS.c.workflow_id == bindparam("wf"),
            JOBS.c.id.in_(bindparam("ids", expanding=True)),
            (count > 0) | blocked,
        )
        .values(
            blocked_count=case((count > n, count - n), else_=0),
            status=case((unblocks, status_literal(states.READY)), else_=JOBS.c.status),
            rev=JOBS.c.rev + case((unblocks, 1), else_=0),
        )
    )


def _lock_in_order(session: Session, condition: Any) -> None:
    """Row-lock jobs in key order so concurrent completions cannot deadlock (PostgreSQL)."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(select(JOBS.c.id).where(condition).order_by(JOBS.c.id).with_for_update())
