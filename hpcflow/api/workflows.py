"""Workflows, their config and their status."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.common import PAGE, envelope, page
from hpcflow.api.registry import Q, operation
from hpcflow.engine import documents as docs
from hpcflow.engine import workflows as wfs
from hpcflow.models import Workflow
from hpcflow.models.workflow import WorkflowConfigIn, WorkflowIn, WorkflowStatusIn

bp = Blueprint("workflows", __name__)


@operation(
    bp,
    "GET",
    "/workflows",
    "list_workflows",
    query=(*PAGE, Q("name"), Q("user"), Q("description"), Q("is_archived", bool)),
)
def list_workflows(
    session: Session,
    skip: float,
    limit: float | None,
    sort_by: str | None,
    reverse_sort: bool,
    **filters: Any,
) -> dict[str, Any]:
    """Retrieve all workflows."""
    first, size = page(skip, limit)
    rows, total = docs.list_docs(
        session, Workflow, None, filters, first, size, sort_by, reverse_sort
    )
    return envelope([r.to_doc() for r in rows], first, total)


@operation(bp, "POST", "/workflows", "add_workflow", body=WorkflowIn, write=True)
def add_workflow(session: Session, body: WorkflowIn) -> dict[str, Any]:
    """Store a workflow (with default config and status)."""
    return wfs.create_workflow(session, body.model_dump(exclude={"id_"})).to_doc()


@operation(bp, "GET", "/workflows/{key}", "get_workflow")
def get_workflow(session: Session, key: str) -> dict[str, Any]:
    """Retrieve a workflow by key."""
    return docs.get_workflow(session, key).to_doc()


@operation(bp, "PUT", "/workflows/{key}", "modify_workflow", body=WorkflowIn, write=True)
def modify_workflow(session: Session, key: str, body: WorkflowIn) -> dict[str, Any]:
    """Update a workflow; a stale _rev is a 409."""
    wf = docs.get_workflow(session, key)
    return docs.update_doc(session, wf, body.model_dump(exclude={"id_", "key"})).to_doc()


@operation(bp, "DELETE", "/workflows/{key}", "remove_workflow", write=True)
def remove_workflow(session: Session, key: str) -> dict[str, Any]:
    """Delete a workflow and everything that belongs to it."""
    return wfs.delete_workflow(session, docs.get_workflow(session, key))


@operation(bp, "GET", "/workflows/{key}/config", "get_workflow_config")
def get_workflow_config(session: Session, key: str) -> dict[str, Any]:
    """Return the workflow config."""
    return wfs.get_config(session, key).to_doc()


@operation(
    bp,
    "PUT",
    "/workflows/{key}/config",
    "modify_workflow_config",
    body=WorkflowConfigIn,
    write=True,
)
def modify_workflow_config(session: Session, key: str, body: WorkflowConfigIn) -> dict[str, Any]:
    """Update the workflow config; a stale _rev is a 409."""
    row = wfs.get_config(session, key)
    wfs.replace_fields(row, body.model_dump(exclude={"id_"}))
    return row.to_doc()


@operation(bp, "GET", "/workflows/{key}/status", "get_workflow_status")
def get_workflow_status(session: Session, key: str) -> dict[str, Any]:
    """Return the workflow status (run_id, is_canceled, auto-tune state)."""
    return wfs.get_status(session, key).to_doc()


@operation(
    bp,
    "PUT",
    "/workflows/{key}/status",
    "modify_workflow_status",
    body=WorkflowStatusIn,
    write=True,
)
def modify_workflow_status(session: Session, key: str, body: WorkflowStatusIn) -> dict[str, Any]:
    """Update the workflow status; a stale _rev is a 409."""
    row = wfs.get_status(session, key)
    wfs.replace_fields(row, body.model_dump(exclude={"id_"}))
    return row.to_doc()
