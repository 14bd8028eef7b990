"""Job statuses and the one table of legal transitions; every status change goes through it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlmodel import col

from hpcflow.errors import Conflict, Invalid
from hpcflow.models import Job

UNINITIALIZED = "uninitialized"
BLOCKED = "blocked"
READY = "ready"
SCHEDULED = "scheduled"
SUBMITTED_PENDING = "submitted_pending"
SUBMITTED = "submitted"
DONE = "done"
TERMINATED = "terminated"
CANCELED = "canceled"
DISABLED = "disabled"

STATUSES = (
    UNINITIALIZED,
    BLOCKED,
    READY,
    SCHEDULED,
    SUBMITTED_PENDING,
    SUBMITTED,
    DONE,
    TERMINATED,
    CANCELED,
    DISABLED,
)
# A blocker in one of these no longer holds its dependents back.
FINISHED = frozenset({DONE, TERMINATED, CANCELED})
# The workflow is complete when every job is in one of these.
COMPLETE = FINISHED | {DISABLED}
INCOMPLETE = tuple(s for s in STATUSES if s not in COMPLETE)
# What a runner may claim.
CLAIMABLE = (READY, SCHEDULED)
# (Re)initialization recomputes these; done, canceled and disabled jobs keep their status.
REINITIALIZABLE = (
    UNINITIALIZED,
    BLOCKED,
    READY,
    SCHEDULED,
    SUBMITTED_PENDING,
    SUBMITTED,
    TERMINATED,
)

# old status -> statuses it may change to. Anything may be reset to uninitialized.
TRANSITIONS: dict[str, frozenset[str]] = {
    UNINITIALIZED: frozenset({BLOCKED, READY, DISABLED, CANCELED}),
    BLOCKED: frozenset({READY, CANCELED, DISABLED, UNINITIALIZED}),
    READY: frozenset({BLOCKED, SCHEDULED, SUBMITTED_PENDING, CANCELED, DISABLED, UNINITIALIZED}),
    SCHEDULED: frozenset({READY, BLOCKED, SUBMITTED_PENDING, CANCELED, UNINITIALIZED}),
    # A runner may fail to launch a claimed job and report it; a lost node's jobs go back to ready.
    SUBMITTED_PENDING: frozenset(
        {SUBMITTED, READY, BLOCKED, DONE, TERMINATED, CANCELED, UNINITIALIZED}
    ),
    SUBMITTED: frozenset({DONE, TERMINATED, CANCELED, READY, BLOCKED, UNINITIALIZED}),
    DONE: frozenset({UNINITIALIZED}),
    # A restart reruns jobs that were terminated (e.g. by a walltime).
    TERMINATED: frozenset({READY, BLOCKED, UNINITIALIZED}),
    CANCELED: frozenset({UNINITIALIZED}),
    DISABLED: frozenset({UNINITIALIZED}),
}


def validate_status(status: str, *, allowed: Iterable[str] = STATUSES) -> str:
    """A known status name, or a 422 listing the accepted ones."""
    allowed = tuple(allowed)
    if status not in allowed:
        raise Invalid(
            f"unknown or unsupported job status {status!r}; use one of: " + ", ".join(allowed),
            field="status",
        )
    return status


def is_legal(old: str, new: str) -> bool:
    """True when the table allows old -> new."""
    return new in TRANSITIONS.get(old, frozenset())


def check(old: str, new: str, job_key: int | str | None = None) -> None:
    """409 naming both states when the table forbids old -> new."""
    if not is_legal(old, new):
        who = f"job {job_key}: " if job_key is not None else ""
        allowed = ", ".join(sorted(TRANSITIONS.get(old, ()))) or "nothing"
        raise Conflict(
            f"{who}illegal status change {old} -> {new} (from {old} a job may go to: {allowed})",
            field="status",
            old=old,
            new=new,
        )


def sources(new: str, among: Iterable[str] | None = None) -> list[str]:
    """Statuses from which `new` is legal (optionally only those in `among`)."""
    pool = STATUSES if among is None else tuple(among)
    return [old for old in pool if is_legal(old, new)]


def change(job: Job, new: str) -> None:
    """Change one loaded job's status through the table and bump its revision."""
    check(job.status, new, job.id)
    job.status = new
    job.rev += 1


def set_status(
    session: Session,
    workflow_id: int,
    new: str,
    *conditions: Any,
    among: Iterable[str] | None = None,
    values: dict[str, Any] | None = None,
) -> int:
    """Bulk change: jobs matching `conditions` whose current status may legally become `new`.

    Jobs in other statuses are left alone; returns the number of jobs changed.
    """
    olds = sources(new, among)
    if not olds:
        return 0
    stmt = (
        update(Job)
        .where(col(Job.workflow_id) == workflow_id, col(Job.status).in_(olds), *conditions)
        .values(status=new, rev=Job.rev + 1, **(values or {}))
        .execution_options(synchronize_session=False)
    )
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]
