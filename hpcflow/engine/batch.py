"""Batch operations (extensions): start, complete and release many jobs, then claim, in one call.

A runner reports everything that happened since its last request in one transaction and gets
the work that those completions made ready in the same answer. Each item goes through the same
code as the single-job operations (completion.start_locked, completion.finish_jobs,
claims.claim_fitting), so results, edges, events and unblocking are identical.

A report may also name `follow`s: successors the runner started itself when their blockers
exited there (engine/follow.py).

Semantics of a bad item: the request as a whole fails, writing nothing, when the request itself
is wrong (malformed body, unknown status, duplicate keys, a result naming another job or run,
a missing workflow or compute node, a stale run_id). An item that conflicts with the job's
current state (missing job, stale rev after a reset, a job that is no longer claimable or
running) is skipped and reported in `errors` with its HTTP code; the other items are applied.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session

from hpcflow.engine import follow, states
from hpcflow.engine.batch_items import (
    CompleteJobsIn,
    JobResult,
    JobRev,
    Outcome,
    StartJobsIn,
    locked_job,
    validate,
)
from hpcflow.engine.claims import claim_fitting
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
from hpcflow.errors import Conflict, NotFound
from hpcflow.keys import parse_key
from hpcflow.models import Job, WorkflowStatus
from hpcflow.models.nodes import NodeResources


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


def start_jobs(session: Session, workflow: str | int, body: StartJobsIn) -> dict[str, Any]:
    """Start many claimed jobs: submitted_pending -> submitted, each checked like start_job."""
    return complete_jobs(
        session,
        workflow,
        CompleteJobsIn(run_id=body.run_id, compute_node_key=body.compute_node_key, start=body.jobs),
    )


def complete_jobs(session: Session, workflow: str | int, body: CompleteJobsIn) -> dict[str, Any]:
    """Apply starts, completions, follows and releases, then claim; per-item conflicts are
    reported."""
    keys = validate(body)
    wf, canceled, scheduled = _workflow_state(session, workflow, body.run_id)
    node = compute_node(session, wf, body.compute_node_key)
    jobs = lock_jobs(session, wf, keys.values())
    out = Outcome()
    started_from: dict[str, str] = {}  # key -> the rev its start named
    to_start = []
    for item in body.start:
        try:
            job = locked_job(jobs, item.key, wf)
            check_rev(job, item.rev)
            states.check(job.status, states.SUBMITTED, job.id)
        except (Conflict, NotFound) as exc:
            out.fail("start", item.key, exc)
            continue
        to_start.append(job)
        started_from[item.key] = item.rev
    start_locked(session, wf, to_start, body.run_id, node.id)
    out.record("started", to_start)
    followed = {item.key for item in body.follow}
    _finish(
        session,
        wf,
        jobs,
        [r for r in body.jobs if r.key not in followed],
        started_from,
        node,
        body.run_id,
        out,
    )
    follow.apply_follows(
        session,
        wf,
        jobs,
        body,
        started_from,
        node.id,
        out,
        lambda results: _finish(session, wf, jobs, results, started_from, node, body.run_id, out),
    )
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
        if body.claim.successors and not canceled:
            answer["successors"] = follow.successor_docs(
                session, wf, node.id, body.claim, size, claimed
            )
    if out.errors:
        answer["error_counts"] = dict(Counter(e["code"] for e in out.errors))
    return answer


def _finish(
    session: Session,
    wf: int,
    jobs: dict[int, Job],
    results: list[JobResult],
    started_from: dict[str, str],
    node: Any,
    run_id: int,
    out: Outcome,
) -> None:
    """Check and apply completions; a job started in this request names its start's rev."""
    finishing = []
    for result in results:
        try:
            job = locked_job(jobs, result.key, wf)
            rev = result.rev
            if result.key in started_from:
                if rev != started_from[result.key]:
                    raise Conflict(
                        f"jobs/{job.id}: started in this request from _rev "
                        f"{started_from[result.key]}, completed from _rev {rev}",
                        field="_rev",
                    )
                rev = str(job.rev)
            check_completion(job, result.status, rev, run_id, result.result)
        except (Conflict, NotFound) as exc:
            out.fail("complete", result.key, exc)
            continue
        finishing.append(Completion(job, result.status, result.result, node))
    finish_jobs(session, wf, finishing)
    out.record("completed", [c.job for c in finishing])


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
            job = locked_job(jobs, item.key, workflow_id)
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
