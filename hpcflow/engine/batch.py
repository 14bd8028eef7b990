"""Batch operations (extensions): start, complete and release many jobs, then claim, in one call.

A runner reports everything that happened since its last request in one transaction and gets
the work that those completions made ready in the same answer. Each item goes through the same
code as the single-job operations (completion.start_locked, completion.finish_jobs,
claims.claim_fitting), so results, edges, events and unblocking are identical.

Semantics of a bad item: the request as a whole fails, writing nothing, when the request itself
is wrong (malformed body, unknown status, duplicate keys, a result naming another job or run,
a missing workflow or compute node, a stale run_id). An item that conflicts with the job's
current state (missing job, stale rev after a reset, a job that is no longer claimable or
running) is skipped and reported in `errors` with its HTTP code; the other items are applied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import Field as PField
from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.claims import MAX_LIMIT, claim_fitting
from hpcflow.engine.completion import (
    Completion,
    check_completion,
    check_run_id,
    compute_node,
    finish_jobs,
    lock_jobs,
    start_locked,
)
from hpcflow.engine.documents import check_rev, get_workflow
from hpcflow.engine.initialize import JOBS
from hpcflow.engine.job_docs import render_jobs
from hpcflow.engine.statements import cached_statement, status_literal
from hpcflow.errors import Conflict, HpcflowError, Invalid, NotFound
from hpcflow.keys import parse_key
from hpcflow.models import Job, WorkflowStatus
from hpcflow.models.base import ApiModel
from hpcflow.models.job import ResultIn
from hpcflow.models.nodes import NodeResources

MAX_ITEMS = 10_000
MAX_LOOKAHEAD = 10_000


class JobRev(ApiModel):
    """A job and the revision the caller last saw."""

    key: str = PField(min_length=1)
    rev: str = PField(min_length=1)


class JobResult(JobRev):
    """A finished run of a job: its final status and result."""

    status: str
    result: ResultIn


class ClaimRequest(ApiModel):
    """Claim after the updates: jobs packed into `resources`, plus a queue of `lookahead`."""

    resources: NodeResources
    sort_method: str | None = None
    limit: int | None = PField(default=None, ge=0, le=MAX_LIMIT)
    # Further jobs that each fit the compute node's registered resources, for the runner to
    # start as its resources free up (submitted_pending on that node until then).
    lookahead: int = PField(default=0, ge=0, le=MAX_LOOKAHEAD)


class StartJobsIn(ApiModel):
    """Body of start_jobs."""

    run_id: int = PField(ge=0)
    compute_node_key: str = PField(min_length=1)
    jobs: list[JobRev] = PField(max_length=MAX_ITEMS)


class CompleteJobsIn(ApiModel):
    """Body of complete_jobs: starts, completions and releases, applied in that order, then
    an optional claim. A job may be started and completed in one request; its completion then
    names the same rev as its start."""

    run_id: int = PField(ge=0)
    compute_node_key: str = PField(min_length=1)
    start: list[JobRev] = PField(default_factory=list, max_length=MAX_ITEMS)
    jobs: list[JobResult] = PField(default_factory=list, max_length=MAX_ITEMS)
    # Claimed jobs the runner gives back unstarted (it is stopping): back to ready.
    release: list[JobRev] = PField(default_factory=list, max_length=MAX_ITEMS)
    claim: ClaimRequest | None = None


class Outcome:
    """What happened to each item: applied (key, rev, status) or skipped with an error."""

    def __init__(self) -> None:
        self.done: dict[str, list[dict[str, Any]]] = {
            "started": [],
            "completed": [],
            "released": [],
        }
        self.errors: list[dict[str, Any]] = []

    def fail(self, operation: str, key: str, exc: HpcflowError) -> None:
        """Record a skipped item with the HTTP code its single-job operation would return."""
        self.errors.append(
            {"_key": key, "operation": operation, "code": exc.status, "message": str(exc)}
        )

    def record(self, bucket: str, jobs: Iterable[Job]) -> None:
        """Record applied items with the job's new revision and status."""
        self.done[bucket].extend(
            {"_key": str(j.id), "_rev": str(j.rev), "status": j.status} for j in jobs
        )


def _keys(items: list[Any], what: str) -> dict[str, int]:
    """Parse every key once; a malformed or repeated key fails the whole request."""
    parsed: dict[str, int] = {}
    for item in items:
        if item.key in parsed:
            raise Invalid(f"job {item.key!r} appears twice in {what}", field=what)
        parsed[item.key] = parse_key(item.key, "key", missing=Invalid)
    return parsed


def _validate(body: CompleteJobsIn) -> dict[str, int]:
    """Request-level checks (nothing depends on the database): 400/422 naming the culprit."""
    keys = _keys(body.start, "start") | _keys(body.jobs, "jobs")
    both = set(_keys(body.release, "release")) & set(keys)
    if both:
        raise Invalid(
            f"job {sorted(both)[0]!r} is both released and started or completed", field="release"
        )
    for item in body.jobs:
        states.validate_status(item.status, allowed=sorted(states.FINISHED))
        if item.result.job_key.rpartition("/")[2] != item.key:
            raise Invalid(
                f"jobs[{item.key}]: result.job_key {item.result.job_key!r} does not "
                f"match job {item.key}",
                field="job_key",
            )
        if item.result.run_id != body.run_id:
            raise Invalid(
                f"jobs[{item.key}]: result.run_id {item.result.run_id} does not match "
                f"run_id {body.run_id}",
                field="run_id",
            )
    return keys | _keys(body.release, "release")


def _workflow_state(session: Session, workflow: str | int, run_id: int) -> tuple[int, bool, bool]:
    """The workflow's id, cancel flag and whether it has scheduled jobs, in one read; 404 for
    a missing workflow, 409 for a stale run_id (as check_run_id)."""
    wf = parse_key(workflow, "workflow")
    state = cached_statement(session, "workflow_state", _state_query)
    row = session.execute(state, {"wf": wf}).one_or_none()
    if row is None:
        wf = get_workflow(session, workflow).id  # 404 naming the workflow
        check_run_id(session, wf, run_id)
        return wf, False, True
    if run_id != row[0]:
        raise Conflict(
            f"run_id {run_id} is stale: workflow {wf} is at run_id {row[0]}", field="run_id"
        )
    return wf, bool(row[1]), bool(row[2])


def _state_query(_dialect: str) -> Any:
    wf: Any = bindparam("wf")
    scheduled = JOBS.c.status == status_literal(states.SCHEDULED)
    has_scheduled = exists().where(JOBS.c.workflow_id == wf, scheduled)
    return select(  # type: ignore[call-overload]
        WorkflowStatus.run_id, WorkflowStatus.is_canceled, has_scheduled
    ).where(WorkflowStatus.workflow_id == wf)


def _job(jobs: dict[int, Job], key: str, workflow_id: int) -> Job:
    job = jobs.get(parse_key(key, "key"))
    if job is None:
        raise NotFound(f"jobs {key!r} not found in workflow {workflow_id}", field="key")
    return job


def start_jobs(session: Session, workflow: str | int, body: StartJobsIn) -> dict[str, Any]:
    """Start many claimed jobs: submitted_pending -> submitted, each checked like start_job."""
    return complete_jobs(
        session,
        workflow,
        CompleteJobsIn(run_id=body.run_id, compute_node_key=body.compute_node_key, start=body.jobs),
    )


def complete_jobs(session: Session, workflow: str | int, body: CompleteJobsIn) -> dict[str, Any]:
    """Apply starts, completions and releases, then claim; per-item conflicts are reported."""
    keys = _validate(body)
    wf, canceled, scheduled = _workflow_state(session, workflow, body.run_id)
    node = compute_node(session, wf, body.compute_node_key)
    jobs = lock_jobs(session, wf, keys.values())
    out = Outcome()
    started_from: dict[str, str] = {}  # key -> the rev its start named
    to_start = []
    for item in body.start:
        try:
            job = _job(jobs, item.key, wf)
            check_rev(job, item.rev)
            states.check(job.status, states.SUBMITTED, job.id)
        except (Conflict, NotFound) as exc:
            out.fail("start", item.key, exc)
            continue
        to_start.append(job)
        started_from[item.key] = item.rev
    start_locked(session, wf, to_start, body.run_id, node.id)
    out.record("started", to_start)
    finishing = []
    for result in body.jobs:
        try:
            job = _job(jobs, result.key, wf)
            rev = result.rev
            if result.key in started_from:
                if rev != started_from[result.key]:
                    raise Conflict(
                        f"jobs/{job.id}: started in this request from _rev "
                        f"{started_from[result.key]}, completed from _rev {rev}",
                        field="_rev",
                    )
                rev = str(job.rev)
            check_completion(job, result.status, rev, body.run_id, result.result)
        except (Conflict, NotFound) as exc:
            out.fail("complete", result.key, exc)
            continue
        finishing.append(Completion(job, result.status, result.result, node))
    finish_jobs(session, wf, finishing)
    out.record("completed", [c.job for c in finishing])
    released = _release(session, wf, jobs, body.release, node.id, out)
    out.record("released", released)
    session.flush()
    answer: dict[str, Any] = {**out.done, "errors": out.errors, "jobs": [], "reason": ""}
    if body.claim is not None:
        size = _node_size(node.resources)
        claimed, answer["reason"] = claim_fitting(
            session,
            wf,
            body.claim.resources,
            body.claim.sort_method,
            body.claim.limit,
            node.id,
            lookahead=body.claim.lookahead,
            node_size=size,
            canceled=canceled,
            scheduled=scheduled,
        )
        answer["jobs"] = render_jobs(session, claimed)
    if out.errors:
        answer["error_counts"] = dict(Counter(e["code"] for e in out.errors))
    return answer


def _node_size(resources: dict[str, Any] | None) -> NodeResources | None:
    """The compute node's registered resources (the lookahead budget), if readable."""
    try:
        return NodeResources.model_validate(resources) if resources else None
    except ValueError:
        return None


def _release(
    session: Session,
    workflow_id: int,
    jobs: dict[int, Job],
    items: list[JobRev],
    node_id: int,
    out: Outcome,
) -> list[Job]:
    """Claimed, unstarted jobs of this node back to ready (the runner stops before them)."""
    released = []
    for item in items:
        try:
            job = _job(jobs, item.key, workflow_id)
            check_rev(job, item.rev)
            if job.status != states.SUBMITTED_PENDING or job.compute_node_id != node_id:
                raise Conflict(
                    f"jobs/{job.id} is {job.status} on compute node "
                    f"{job.compute_node_id}; only a submitted_pending job of "
                    f"compute node {node_id} can be released",
                    field="status",
                )
        except (Conflict, NotFound) as exc:
            out.fail("release", item.key, exc)
            continue
        states.change(job, states.READY)
        job.compute_node_id = None
        job.claimed_at = None
        released.append(job)
    return released
