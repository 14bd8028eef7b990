"""Guards: a scheduler config pauses itself after repeated submit failures; people resume it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from hpcflow.autoscale.supply import TABLES
from hpcflow.engine.documents import get_doc, get_workflow
from hpcflow.engine.events import post_event
from hpcflow.errors import NotFound

MAX_FAILURES = 5
MAX_ERROR_CHARS = 4000


def record_failure(session: Session, table: Any, config_id: int, error: str) -> bool:
    """Count one failed submit and keep its text; True when this failure paused the config."""
    row = session.get(table, config_id, populate_existing=True, with_for_update=True)
    if row is None:
        return False
    row.consecutive_failures += 1
    row.last_error = error[:MAX_ERROR_CHARS]
    row.rev += 1
    ref = f"{table.collection}/{row.id}"
    if row.consecutive_failures >= MAX_FAILURES and not row.is_paused:
        row.is_paused = True
        post_event(
            session,
            row.workflow_id,
            "autoscale",
            f"Paused {ref} after {row.consecutive_failures} consecutive submit failures; "
            f"last error: {row.last_error}",
            type="paused",
            scheduler_config_id=ref,
            consecutive_failures=row.consecutive_failures,
            error=row.last_error,
        )
        return True
    post_event(
        session,
        row.workflow_id,
        "autoscale",
        f"Submit to {ref} failed ({row.consecutive_failures} in a row): {row.last_error}",
        type="submit_failed",
        scheduler_config_id=ref,
        consecutive_failures=row.consecutive_failures,
        error=row.last_error,
    )
    return False


def record_success(session: Session, table: Any, config_id: int) -> None:
    """A submit worked: the failure streak is over."""
    row = session.get(table, config_id, populate_existing=True)
    if row is not None and row.consecutive_failures:
        row.consecutive_failures = 0
        row.rev += 1


def set_paused(
    session: Session, workflow: str | int, collection: str, key: str, paused: bool
) -> dict[str, Any]:
    """Pause or resume autoscaling of one scheduler config; resuming clears the failure streak."""
    wf = get_workflow(session, workflow)
    table = TABLES.get(collection)
    if table is None:
        raise NotFound(
            f"unknown scheduler collection {collection!r}; use one of: " + ", ".join(TABLES),
            field="collection",
        )
    row = get_doc(session, table, wf.id, key)
    ref = f"{collection}/{row.id}"
    if row.is_paused != paused or (not paused and row.consecutive_failures):
        row.is_paused = paused
        if not paused:
            row.consecutive_failures = 0
        row.rev += 1
        what = "Paused" if paused else "Resumed"
        post_event(
            session,
            wf.id,
            "autoscale",
            f"{what} autoscaling of {ref}",
            type="paused" if paused else "resumed",
            scheduler_config_id=ref,
        )
        session.flush()
    return row.to_doc()
