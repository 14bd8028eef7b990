"""start_job, complete_job and manage_status_change: runs of jobs and their side effects.

The cores (start_locked, finish_jobs) take any number of loaded, checked jobs, so the single-job
routes and the batch operations (engine/batch.py) share every statement. Completion touches only
the jobs' direct dependents (a counter of unfinished blockers per job), so its cost does not grow
with the workflow; a failure walks downstream only to cancel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from hpcflow.autotune import escalation
from hpcflow.engine import bulk, states
from hpcflow.engine.documents import check_rev, get_workflow
from hpcflow.engine.events import post_event
from hpcflow.engine.hashes import input_hashes
from hpcflow.engine.initialize import EDGES, JOBS, chunks, downstream, set_status_many
from hpcflow.engine.job_docs import render_jobs
from hpcflow.engine.statements import cached_statement
from hpcflow.engine.unblock import release_dependents
from hpcflow.errors import Conflict, Invalid, NotFound
from hpcflow.keys import parse_key
from hpcflow.models import ComputeNode, Job, Result, WorkflowStatus
from hpcflow.models.job import ResultIn

RESULTS = Result.__table__  # type: ignore[attr-defined]


def lock_job(session: Session, workflow: str | int, key: str | int) -> Job:
    """The workflow's job, row-locked on PostgreSQL (SQLite writes here are BEGIN IMMEDIATE)."""
    job = session.get(Job, parse_key(key, "key"), with_for_update=True)
    if job is None or job.workflow_id != parse_key(workflow, "workflow"):
        wf = get_workflow(session, workflow)  # 404 naming the workflow if that is what's missing
        raise NotFound(f"jobs {key!r} not found in workflow {wf.id}", field="key")
    return job


def lock_jobs(session: Session, workflow_id: int, ids: Iterable[int]) -> dict[int, Job]:
    """The workflow's jobs among `ids`, row-locked in key order (no deadlocks between batches)."""
    found: dict[int, Job] = {}
    stmt = cached_statement(session, "lock_jobs", _lock_jobs)
    for chunk in chunks(sorted(set(ids))):
        found.update(
            (job.id, job) for job in session.scalars(stmt, {"wf": workflow_id, "ids": chunk})
        )
    return found


def _lock_jobs(_dialect: str) -> Any:
    return (
        select(Job)
        .where(
            JOBS.c.workflow_id == bindparam("wf"), JOBS.c.id.in_(bindparam("ids", expanding=True))
        )
        .order_by(JOBS.c.id)
        .with_for_update()
    )


def check_run_id(session: Session, workflow_id: int, run_id: int) -> None:
    """409 when the caller works on a run that is no longer the workflow's current one."""
    current = session.scalar(
        select(WorkflowStatus.run_id).where(  # type: ignore[call-overload]
            WorkflowStatus.workflow_id == workflow_id
        )
    )
    if run_id != current:
        raise Conflict(
            f"run_id {run_id} is stale: workflow {workflow_id} is at run_id {current}",
            field="run_id",
        )


def compute_node(session: Session, workflow_id: int, ref: str) -> ComputeNode:
    """The compute node named by a key or _id ('compute_nodes/5'); 404 when unknown."""
    key = ref.rpartition("/")[2]
    stmt = cached_statement(session, "compute_node", _compute_node)
    node = session.scalars(stmt, {"id": parse_key(key, "key"), "wf": workflow_id}).first()
    if node is None:
        raise NotFound(f"compute_nodes {key!r} not found in workflow {workflow_id}", field="key")
    return node


def _compute_node(_dialect: str) -> Any:
    return select(ComputeNode).where(
        ComputeNode.id == bindparam("id"),  # type: ignore[arg-type]
        ComputeNode.workflow_id == bindparam("wf"),  # type: ignore[arg-type]
    )


def start_job(
    session: Session, workflow: str | int, key: str, rev: str, run_id: int, compute_node_key: str
) -> dict[str, Any]:
    """submitted_pending -> submitted for the current run, recording which node runs it."""
    job = lock_job(session, workflow, key)
    check_rev(job, rev)
    check_run_id(session, job.workflow_id, run_id)
    node = compute_node(session, job.workflow_id, compute_node_key)
    start_locked(session, job.workflow_id, [job], run_id, node.id)
    return render_jobs(session, [job])[0]


def start_locked(
    session: Session, workflow_id: int, jobs: Sequence[Job], run_id: int, node_id: int
) -> None:
    """Start loaded, checked jobs through the state table and record their executed edges."""
    for job in jobs:
        states.change(job, states.SUBMITTED)
        job.run_id = run_id
        job.compute_node_id = node_id
    # Not flushed here: a completion in the same request then writes each job once.
    with session.no_autoflush:
        _record_executed(session, workflow_id, node_id, [j.id for j in jobs], run_id)


def _executed_upsert(dialect: str) -> Any:
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = upsert(EDGES).values(
        workflow_id=bindparam("wf"),
        name="executed",
        from_coll="compute_nodes",
        from_id=bindparam("node"),
        to_coll="jobs",
        to_id=bindparam("job"),
        data=bindparam("data"),
        rev=1,
    )
    return stmt.on_conflict_do_update(
        index_elements=["workflow_id", "name", "from_id", "to_coll", "to_id"],
        set_={"data": stmt.excluded.data, "rev": EDGES.c.rev + 1},
    )


def _record_executed(
    session: Session, wf: int, node_id: int, job_ids: Sequence[int], run_id: int
) -> None:
    """The executed edges node -> job; a rerun on the same node updates it (edges are unique)."""
    if not job_ids:
        return
    session.execute(
        cached_statement(session, "executed", _executed_upsert),
        [{"wf": wf, "node": node_id, "job": j, "data": {"run_id": run_id}} for j in job_ids],
    )


@dataclass
class Completion:
    """One run to finish: the locked job, the status and result it reports, where it ran."""

    job: Job
    status: str
    result: ResultIn
    node: ComputeNode


def check_completion(job: Job, status: str, rev: str, run_id: int, result: ResultIn) -> None:
    """409/422 when this result cannot finish this job (stale rev, mismatch, wrong status)."""
    check_rev(job, rev)
    if result.job_key.rpartition("/")[2] != str(job.id):
        raise Invalid(
            f"result.job_key {result.job_key!r} does not match job {job.id}", field="job_key"
        )
    if result.run_id != run_id:
        raise Invalid(
            f"result.run_id {result.run_id} does not match run_id {run_id}", field="run_id"
        )
    old = job.status
    # A canceled workflow's runner reports its killed jobs; only the result is new.
    if not (old == status == states.CANCELED) and old not in (
        states.SUBMITTED_PENDING,
        states.SUBMITTED,
    ):
        raise Conflict(
            f"job {job.id}: illegal status change {old} -> {status} "
            "(complete_job needs a submitted or submitted_pending job)",
            field="status",
            old=old,
            new=status,
        )


def complete_job(
    session: Session,
    workflow: str | int,
    key: str,
    status: str,
    rev: str,
    run_id: int,
    compute_node_key: str,
    result: ResultIn,
) -> dict[str, Any]:
    """Store the run's result, finish the job, unblock or cancel its dependents."""
    states.validate_status(status, allowed=sorted(states.FINISHED))
    job = lock_job(session, workflow, key)
    wf_id = job.workflow_id
    check_rev(job, rev)
    check_run_id(session, wf_id, run_id)
    node = compute_node(session, wf_id, compute_node_key)
    check_completion(job, status, rev, run_id, result)
    finish_jobs(session, wf_id, [Completion(job, status, result, node)])
    return render_jobs(session, [job])[0]


def finish_jobs(session: Session, workflow_id: int, items: Sequence[Completion]) -> None:
    """Store each run's result, finish its job (or escalate it), then unblock or cancel."""
    if not items:
        return
    rows: list[dict[str, Any]] = []
    finished: dict[int, bool] = {}  # job id -> failed
    for item in items:
        job, status, result = item.job, item.status, item.result
        asked = escalation.requested(job, item.node)
        finishing = not (job.status == status == states.CANCELED)
        escalated = False  # killed at its memory or runtime limit: back to ready with more
        if finishing:
            escalated = escalation.escalate(session, job, status, result)
            if not escalated:
                states.change(job, status)
                finished[job.id] = result.return_code != 0
        else:
            job.rev += 1
        rows.append(
            {
                "workflow_id": workflow_id,
                "job_key": str(job.id),
                "run_id": result.run_id,
                "return_code": result.return_code,
                "exec_time_minutes": result.exec_time_minutes,
                "completion_time": result.completion_time,
                "status": status,
                "rev": 1,
                **asked,
            }
        )
    jobs = [item.job for item in items]
    with session.no_autoflush:  # one UPDATE per job: its start, finish and hash together
        hashes = input_hashes(session, workflow_id, jobs)
    for job in jobs:
        job.hash = hashes[job.id]
    session.flush()
    result_ids = _insert_results(session, rows)
    session.execute(
        cached_statement(session, "insert_edges", lambda _d: insert(EDGES)),
        [
            {
                "workflow_id": workflow_id,
                "name": "returned",
                "from_coll": "jobs",
                "from_id": job.id,
                "to_coll": "results",
                "to_id": rid,
                "rev": 1,
            }
            for job, rid in zip(jobs, result_ids, strict=True)
        ],
    )
    cascades = release_dependents(session, workflow_id, finished)
    by_id = {item.job.id: item for item in items}
    for job_id, canceled in cascades.items():
        item = by_id[job_id]
        job, result = item.job, item.result
        post_event(
            session,
            workflow_id,
            "job",
            f"Job {job.id} failed with return code "
            f"{result.return_code}; canceled {len(canceled)} dependent jobs",
            type="failed",
            job_key=str(job.id),
            job_name=job.name,
            status=item.status,
            return_code=result.return_code,
            run_id=result.run_id,
            canceled_job_keys=[str(k) for k in sorted(canceled)[:1000]],
        )


def _insert_results(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Store result rows with keys chosen first; returns the keys in order.

    INSERT ... RETURNING would run once per row on SQLite (it cannot promise the order of
    RETURNING rows) and, as one long multi-row statement on PostgreSQL, costs psycopg a fresh
    parse per batch size; one executemany of a short statement is cheaper on both. The keys are
    safe to choose: the flush above already holds SQLite's write lock, and PostgreSQL draws
    them from the sequence.
    """
    ids = bulk.reserve_ids(session, RESULTS, len(rows))
    for row, rid in zip(rows, ids, strict=True):
        row["id"] = rid
    session.execute(cached_statement(session, "results", lambda _d: insert(RESULTS)), rows)
    return ids


def on_finished(session: Session, workflow_id: int, job_id: int, *, failed: bool) -> set[int]:
    """One finished job: release its dependents or, on failure, cancel its cascade first."""
    return release_dependents(session, workflow_id, {job_id: failed}).get(job_id, set())


def manage_status_change(
    session: Session, workflow: str | int, key: str, status: str, rev: str, run_id: int
) -> dict[str, Any]:
    """Change one job's status through the table; resetting a finished job resets downstream."""
    states.validate_status(status)
    if status in states.FINISHED:
        raise Invalid(
            f"status {status!r} finishes a job; use complete_job with a result", field="status"
        )
    job = lock_job(session, workflow, key)
    wf_id = job.workflow_id
    check_rev(job, rev)
    check_run_id(session, wf_id, run_id)
    old = job.status
    if old == status:
        return render_jobs(session, [job])[0]
    states.change(job, status)
    session.flush()
    if status == states.UNINITIALIZED and old in states.FINISHED:
        below = downstream(session, wf_id, [job.id])
        n = set_status_many(
            session,
            wf_id,
            states.UNINITIALIZED,
            below,
            among=[s for s in states.STATUSES if s != states.DISABLED],
        )
        post_event(
            session,
            wf_id,
            "job",
            f"Reset job {job.id} from {old} and {n} downstream jobs to uninitialized",
            type="reset",
            job_key=str(job.id),
            old_status=old,
        )
    return render_jobs(session, [job])[0]
