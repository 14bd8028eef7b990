"""Job logs (extension): store the runner's stdout/stderr tails and read them per job and run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from hpcflow.engine.documents import get_doc, get_workflow, list_docs
from hpcflow.models import Job, JobLog
from hpcflow.models.logs import JobLogIn

JOB_LOGS = JobLog.__table__  # type: ignore[attr-defined]


def _values(workflow_id: int, item: JobLogIn) -> dict[str, Any]:
    values = item.model_dump(exclude={"key", "id_", "rev"})
    values["job_key"] = values["job_key"].rpartition("/")[2]
    return {"workflow_id": workflow_id, "rev": 1, **values}


def add_logs(session: Session, workflow: str | int, items: list[JobLogIn]) -> dict[str, Any]:
    """Insert many log documents in one statement; returns how many."""
    wf = get_workflow(session, workflow)
    if items:
        session.execute(insert(JOB_LOGS), [_values(wf.id, item) for item in items])
    return {"message": f"stored {len(items)} job logs", "count": len(items)}


def add_log(session: Session, workflow: str | int, item: JobLogIn) -> dict[str, Any]:
    """Insert one log document and return it."""
    wf = get_workflow(session, workflow)
    row = JobLog(**_values(wf.id, item))
    session.add(row)
    session.flush()
    return row.to_doc()


def list_logs(
    session: Session,
    workflow: str | int,
    filters: dict[str, Any],
    skip: int,
    limit: int,
    sort_by: str | None = None,
    reverse: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """A page of log documents matching equality filters."""
    wf = get_workflow(session, workflow)
    if filters.get("job_key"):
        filters = {**filters, "job_key": str(filters["job_key"]).rpartition("/")[2]}
    rows, total = list_docs(session, JobLog, wf.id, filters, skip, limit, sort_by, reverse)
    return [r.to_doc() for r in rows], total


def job_logs(
    session: Session, workflow: str | int, key: str, run_id: int | None, skip: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The logs of one job (404 for an unknown job), optionally of one run, oldest first."""
    wf = get_workflow(session, workflow)
    job = get_doc(session, Job, wf.id, key)
    return list_logs(
        session, wf.id, {"job_key": str(job.id), "run_id": run_id}, skip, limit, "run_id"
    )


def get_log(session: Session, workflow: str | int, key: str) -> dict[str, Any]:
    """One log document by key."""
    wf = get_workflow(session, workflow)
    return get_doc(session, JobLog, wf.id, key).to_doc()
