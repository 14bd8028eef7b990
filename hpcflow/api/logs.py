"""Extensions for runners: job logs (stdout/stderr tails), bulk process stats, wait_for_ready."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.common import PAGE, envelope, page
from hpcflow.api.registry import Q, operation
from hpcflow.engine import logs, process_stats, readiness
from hpcflow.models.logs import JobLogIn, JobLogsIn
from hpcflow.models.nodes import JobProcessStatsBatchIn

bp = Blueprint("logs", __name__)
BASE = "/workflows/{workflow}/job_logs"


@operation(bp, "POST", BASE, "add_job_log", body=JobLogIn, write=True, extension=True)
def add_job_log(session: Session, workflow: str, body: JobLogIn) -> dict[str, Any]:
    """Store the stdout/stderr tail of one run of one job."""
    return logs.add_log(session, workflow, body)


@operation(
    bp,
    "POST",
    "/workflows/{workflow}/bulk_job_logs",
    "add_job_logs",
    body=JobLogsIn,
    write=True,
    extension=True,
)
def add_job_logs(session: Session, workflow: str, body: JobLogsIn) -> dict[str, Any]:
    """Store many job logs in one transaction."""
    return logs.add_logs(session, workflow, body.logs)


@operation(
    bp,
    "POST",
    "/workflows/{workflow}/bulk_job_process_stats",
    "add_job_process_stats_bulk",
    body=JobProcessStatsBatchIn,
    write=True,
    extension=True,
)
def add_job_process_stats_bulk(
    session: Session, workflow: str, body: JobProcessStatsBatchIn
) -> dict[str, Any]:
    """Store many runs' process stats with their process_used edges in one transaction."""
    return process_stats.add_process_stats(session, workflow, body.stats)


@operation(
    bp,
    "GET",
    BASE,
    "list_job_logs",
    query=(*PAGE, Q("job_key"), Q("run_id", int), Q("hostname")),
    extension=True,
)
def list_job_logs(
    session: Session,
    workflow: str,
    skip: float,
    limit: float | None,
    sort_by: str | None,
    reverse_sort: bool,
    **filters: Any,
) -> dict[str, Any]:
    """Retrieve job logs of a workflow, optionally for one job and run."""
    first, size = page(skip, limit)
    items, total = logs.list_logs(session, workflow, filters, first, size, sort_by, reverse_sort)
    return envelope(items, first, total)


@operation(bp, "GET", BASE + "/{key}", "get_job_log", extension=True)
def get_job_log(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """Retrieve one job log by key."""
    return logs.get_log(session, workflow, key)


@operation(
    bp,
    "GET",
    "/workflows/{workflow}/jobs/{key}/logs",
    "get_job_logs",
    query=(Q("run_id", int), Q("skip", float, 0), Q("limit", float, None)),
    extension=True,
)
def get_job_logs(
    session: Session, workflow: str, key: str, run_id: int | None, skip: float, limit: float | None
) -> dict[str, Any]:
    """Retrieve the logs of one job, every run or one run, oldest run first."""
    first, size = page(skip, limit)
    items, total = logs.job_logs(session, workflow, key, run_id, first, size)
    return envelope(items, first, total)


@operation(
    bp,
    "GET",
    "/workflows/{key}/wait_for_ready",
    "wait_for_ready",
    query=(
        Q("timeout", float, 10.0, "Longest wait in seconds (at most 60)"),
        Q("ready_count", int, 0, "Claimable jobs the caller saw but could not take"),
    ),
    extension=True,
)
def wait_for_ready(session: Session, key: str, timeout: float, ready_count: int) -> dict[str, Any]:
    """Long poll: return once the claimable jobs change or the workflow is complete/canceled."""
    return readiness.wait_for_ready(session, key, timeout, ready_count)
