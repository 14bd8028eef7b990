"""Create, change and delete workflows with their config and status documents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session
from sqlmodel import col

from hpcflow.engine.documents import check_rev, create_doc, get_workflow
from hpcflow.errors import Conflict
from hpcflow.models import Workflow, WorkflowConfig, WorkflowStatus


def now_iso() -> str:
    """The current UTC time as ISO 8601, as torc stamps documents."""
    return datetime.now(UTC).isoformat()


def create_workflow(
    session: Session, values: dict[str, Any], config: dict[str, Any] | None = None
) -> Workflow:
    """Insert a workflow with its config and status rows."""
    values = dict(values)
    values["timestamp"] = values.get("timestamp") or now_iso()
    wf = create_doc(session, Workflow, None, values)
    assert wf.id is not None
    session.add(WorkflowConfig(workflow_id=wf.id, **(config or {})))
    session.add(WorkflowStatus(workflow_id=wf.id))
    session.flush()
    return wf


def delete_workflow(session: Session, wf: Workflow) -> dict[str, Any]:
    """Delete a workflow; foreign keys cascade to everything it owns."""
    doc = wf.to_doc()
    session.execute(delete(Workflow).where(col(Workflow.id) == wf.id))
    session.expunge(wf)
    return doc


def get_config(session: Session, key: str | int) -> WorkflowConfig:
    """The workflow's config document."""
    wf = get_workflow(session, key)
    row = session.get(WorkflowConfig, wf.id)
    assert row is not None, "every workflow has a config row"
    return row


def get_status(session: Session, key: str | int, *, lock: bool = False) -> WorkflowStatus:
    """The workflow's status document (locked for update when asked)."""
    wf = get_workflow(session, key)
    row = session.get(WorkflowStatus, wf.id, with_for_update=lock or None)
    assert row is not None, "every workflow has a status row"
    return row


def replace_fields(row: WorkflowConfig | WorkflowStatus, values: dict[str, Any]) -> None:
    """Apply a PUT body to a one-to-one document, honouring _rev."""
    check_rev(_RevView(row), values.pop("rev", None))
    values.pop("key", None)
    values.pop("id_", None)
    for name, value in values.items():
        setattr(row, name, value)
    row.rev += 1


class _RevView:
    """Adapter so check_rev can name config/status documents in its message."""

    def __init__(self, row: WorkflowConfig | WorkflowStatus) -> None:
        self.rev = row.rev
        self.id = row.workflow_id
        self.collection = row.__tablename__


def ensure_not_archived(wf: Workflow) -> None:
    """Archived workflows are read-only."""
    if wf.is_archived:
        raise Conflict(f"workflow {wf.id} is archived", field="workflow")
