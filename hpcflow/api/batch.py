"""Batch job operations (hpcflow extensions): many starts and completions, then a claim."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.registry import operation
from hpcflow.engine import batch
from hpcflow.engine.batch import CompleteJobsIn, StartJobsIn

bp = Blueprint("batch", __name__)
_ANSWER = {
    "type": "object",
    "description": "started, completed, released (each item: _key, "
    "_rev, status), errors (skipped items: _key, operation, code, message), jobs "
    "(claimed job_model documents), reason",
}


@operation(
    bp,
    "PUT",
    "/workflows/{workflow}/start_jobs",
    "start_jobs",
    body=StartJobsIn,
    write=True,
    immediate=True,
    extension=True,
    response=_ANSWER,
)
def start_jobs(session: Session, workflow: str, body: StartJobsIn) -> dict[str, Any]:
    """Start many claimed jobs; a stale item is skipped and reported, a bad request is a 4xx."""
    return batch.start_jobs(session, workflow, body)


@operation(
    bp,
    "POST",
    "/workflows/{workflow}/complete_jobs",
    "complete_jobs",
    body=CompleteJobsIn,
    write=True,
    immediate=True,
    extension=True,
    response=_ANSWER,
)
def complete_jobs(session: Session, workflow: str, body: CompleteJobsIn) -> dict[str, Any]:
    """Start, complete and release many jobs, then claim what fits the freed resources."""
    return batch.complete_jobs(session, workflow, body)
