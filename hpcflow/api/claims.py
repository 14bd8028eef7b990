"""A job's run: start, complete (with its result) and other status changes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.registry import operation, parse_scalar
from hpcflow.engine import completion
from hpcflow.models.job import ResultIn

bp = Blueprint("claims", __name__)
JOB = "/workflows/{workflow}/jobs/{key}"
_JOB = {"type": "object", "description": "job_model"}


@operation(
    bp,
    "PUT",
    JOB + "/start_job/{rev}/{run_id}/{compute_node_key}",
    "start_job",
    write=True,
    immediate=True,
    response=_JOB,
)
def start_job(
    session: Session, workflow: str, key: str, rev: str, run_id: str, compute_node_key: str
) -> dict[str, Any]:
    """Start a claimed job; a stale rev or run_id is a 409."""
    return completion.start_job(
        session, workflow, key, rev, parse_scalar(run_id, int, "run_id"), compute_node_key
    )


@operation(
    bp,
    "POST",
    JOB + "/complete_job/{status}/{rev}/{run_id}/{compute_node_key}",
    "complete_job",
    body=ResultIn,
    write=True,
    immediate=True,
    response=_JOB,
)
def complete_job(
    session: Session,
    workflow: str,
    key: str,
    status: str,
    rev: str,
    run_id: str,
    compute_node_key: str,
    body: ResultIn,
) -> dict[str, Any]:
    """Complete a job with its result; dependents are unblocked or, on failure, canceled."""
    return completion.complete_job(
        session,
        workflow,
        key,
        status,
        rev,
        parse_scalar(run_id, int, "run_id"),
        compute_node_key,
        body,
    )


@operation(
    bp,
    "PUT",
    JOB + "/manage_status_change/{status}/{rev}/{run_id}",
    "manage_status_change",
    write=True,
    immediate=True,
    response=_JOB,
)
def manage_status_change(
    session: Session, workflow: str, key: str, status: str, rev: str, run_id: str
) -> dict[str, Any]:
    """Change a job's status through the transition table and manage side effects."""
    return completion.manage_status_change(
        session, workflow, key, status, rev, parse_scalar(run_id, int, "run_id")
    )
