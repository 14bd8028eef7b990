"""wait_for_ready (extension): a long poll that returns once a job is claimable or nothing is left.

Idle runners on other nodes park here instead of polling, so a job made ready by a completion
anywhere is claimed within milliseconds. The connection goes back to the pool between checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.initialize import JOBS
from hpcflow.errors import Invalid
from hpcflow.models import WorkflowStatus

MAX_TIMEOUT = 60.0
FIRST_DELAY = 0.002
MAX_DELAY = 0.05
COUNT_CAP = 10_001  # past this a count says nothing new and costs a scan


def readiness(session: Session, workflow_id: int) -> dict[str, Any]:
    """Claimable jobs (counted up to a cap), whether any job is unfinished, the cancel flag."""
    canceled = bool(
        session.scalar(
            select(WorkflowStatus.is_canceled).where(  # type: ignore[call-overload]
                WorkflowStatus.workflow_id == workflow_id
            )
        )
    )
    claimable = (
        select(JOBS.c.id)
        .where(JOBS.c.workflow_id == workflow_id, JOBS.c.status.in_(states.CLAIMABLE))
        .limit(COUNT_CAP)
        .subquery()
    )
    ready = 0 if canceled else int(session.scalar(select(func.count()).select_from(claimable)) or 0)
    unfinished = ready or session.scalar(
        select(JOBS.c.id)
        .where(JOBS.c.workflow_id == workflow_id, JOBS.c.status.in_(states.INCOMPLETE))
        .limit(1)
    )
    return {"num_ready": ready, "is_complete": unfinished is None, "is_canceled": canceled}


def wait_for_ready(
    session: Session,
    workflow: str | int,
    timeout: float,
    ready_count: int = 0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Return once the claimable-job count differs from ready_count, or nothing is left to do."""
    # A caller that saw claimable jobs it could not take passes their count, so it sleeps
    # until something changes instead of being woken at once by the same jobs.
    if not 0 <= timeout <= MAX_TIMEOUT:
        raise Invalid(
            f"timeout must be from 0 to {MAX_TIMEOUT:.0f} seconds, got {timeout}", field="timeout"
        )
    if ready_count < 0:
        raise Invalid(f"ready_count must be 0 or more, got {ready_count}", field="ready_count")
    wf_id = get_workflow(session, workflow).id
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY
    while True:
        state = readiness(session, wf_id)
        changed = (
            state["num_ready"] != min(ready_count, COUNT_CAP)
            or state["is_complete"]
            or state["is_canceled"]
        )
        left = deadline - time.monotonic()
        if changed or left <= 0:
            return {**state, "timed_out": not changed}
        # End the read transaction and return the connection while we wait.
        session.rollback()
        session.close()
        sleep(min(delay, left))
        delay = min(delay * 2, MAX_DELAY)
