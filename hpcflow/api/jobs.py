"""Jobs: CRUD and bulk insert."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.common import PAGE, envelope, page
from hpcflow.api.registry import Q, operation
from hpcflow.engine import documents as docs
from hpcflow.engine import job_docs
from hpcflow.models import Job
from hpcflow.models.job import JobIn, JobsIn

bp = Blueprint("jobs", __name__)
BASE = "/workflows/{workflow}/jobs"
JOB_FILTERS = (
    Q("_key"),
    Q("name"),
    Q("command"),
    Q("status"),
    Q("cancel_on_blocking_job_failure", bool),
    Q("supports_termination", bool),
)


@operation(bp, "GET", BASE, "list_jobs", query=(*PAGE, *JOB_FILTERS))
def list_jobs(
    session: Session,
    workflow: str,
    skip: float,
    limit: float | None,
    sort_by: str | None,
    reverse_sort: bool,
    **filters: Any,
) -> dict[str, Any]:
    """Retrieve all jobs of a workflow, with their references resolved to _ids."""
    wf = docs.get_workflow(session, workflow)
    first, size = page(skip, limit)
    rows, total = docs.list_docs(session, Job, wf.id, filters, first, size, sort_by, reverse_sort)
    return envelope(job_docs.render_jobs(session, rows), first, total)


@operation(bp, "POST", BASE, "add_job", body=JobIn, write=True)
def add_job(session: Session, workflow: str, body: JobIn) -> dict[str, Any]:
    """Store a job; references are _ids (or keys) of documents in the same workflow."""
    wf = docs.get_workflow(session, workflow)
    [key] = job_docs.add_jobs(session, wf.id, [body])  # type: ignore[arg-type]
    return job_docs.render_jobs(session, [docs.get_doc(session, Job, wf.id, key)])[0]


@operation(bp, "POST", "/workflows/{workflow}/bulk_jobs", "add_jobs", body=JobsIn, write=True)
def add_jobs(session: Session, workflow: str, body: JobsIn) -> dict[str, Any]:
    """Add jobs in bulk, in one transaction; returns their keys in request order."""
    wf = docs.get_workflow(session, workflow)
    keys = job_docs.add_jobs(session, wf.id, body.jobs)  # type: ignore[arg-type]
    return {"items": [str(k) for k in keys]}


@operation(bp, "DELETE", BASE, "delete_jobs", write=True)
def delete_jobs(session: Session, workflow: str) -> dict[str, Any]:
    """Delete every job of a workflow, with their edges."""
    wf = docs.get_workflow(session, workflow)
    return {"message": f"deleted {docs.delete_all(session, Job, wf.id)} jobs"}


@operation(bp, "GET", BASE + "/{key}", "get_job")
def get_job(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """Retrieve a job by key."""
    wf = docs.get_workflow(session, workflow)
    return job_docs.render_jobs(session, [docs.get_doc(session, Job, wf.id, key)])[0]


@operation(bp, "PUT", BASE + "/{key}", "modify_job", body=JobIn, write=True)
def modify_job(session: Session, workflow: str, key: str, body: JobIn) -> dict[str, Any]:
    """Replace a job's fields and references; a stale _rev is a 409."""
    wf = docs.get_workflow(session, workflow)
    job = job_docs.replace_job(session, docs.get_doc(session, Job, wf.id, key), body)
    return job_docs.render_jobs(session, [job])[0]


@operation(bp, "DELETE", BASE + "/{key}", "remove_job", write=True)
def remove_job(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """Delete a job and its edges."""
    wf = docs.get_workflow(session, workflow)
    job = docs.get_doc(session, Job, wf.id, key)
    doc = job_docs.render_jobs(session, [job])[0]
    docs.delete_doc(session, job)
    return doc
