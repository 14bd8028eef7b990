"""start_job, complete_job and manage_status_change: one run of one job and its side effects.

Completion touches only the job's direct dependents (a counter of unfinished blockers per job),
so its cost does not grow with the workflow; a failure walks downstream only to cancel.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, case, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from hpcflow.autotune import escalation
from hpcflow.engine import states
from hpcflow.engine.documents import check_rev, get_doc, get_workflow
from hpcflow.engine.events import post_event
from hpcflow.engine.initialize import EDGES, JOBS, chunks, downstream, set_status_many
from hpcflow.engine.job_docs import render_jobs
from hpcflow.errors import Conflict, Invalid, NotFound
from hpcflow.keys import parse_key
from hpcflow.models import ComputeNode, Edge, File, Job, Result, UserData, WorkflowStatus
from hpcflow.models.job import ResultIn


def lock_job(session: Session, workflow: str | int, key: str | int) -> Job:
    """The workflow's job, row-locked on PostgreSQL (SQLite writes here are BEGIN IMMEDIATE)."""
    job = session.get(Job, parse_key(key, "key"), with_for_update=True)
    if job is None or job.workflow_id != parse_key(workflow, "workflow"):
        wf = get_workflow(session, workflow)  # 404 naming the workflow if that is what's missing
        raise NotFound(f"jobs {key!r} not found in workflow {wf.id}", field="key")
    return job


def check_run_id(session: Session, workflow_id: int, run_id: int) -> None:
    """409 when the caller works on a run that is no longer the workflow's current one."""
    current = session.scalar(select(WorkflowStatus.run_id).where(
        WorkflowStatus.workflow_id == workflow_id))
    if run_id != current:
        raise Conflict(f"run_id {run_id} is stale: workflow {workflow_id} is at run_id {current}",
                       field="run_id")


def compute_node(session: Session, workflow_id: int, ref: str) -> ComputeNode:
    """The compute node named by a key or _id ('compute_nodes/5'); 404 when unknown."""
    return get_doc(session, ComputeNode, workflow_id, ref.rpartition("/")[2])


def start_job(session: Session, workflow: str | int, key: str, rev: str, run_id: int,
              compute_node_key: str) -> dict[str, Any]:
    """submitted_pending -> submitted for the current run, recording which node runs it."""
    job = lock_job(session, workflow, key)
    check_rev(job, rev)
    check_run_id(session, job.workflow_id, run_id)
    node = compute_node(session, job.workflow_id, compute_node_key)
    states.change(job, states.SUBMITTED)
    job.run_id = run_id
    job.compute_node_id = node.id
    session.flush()
    _record_executed(session, job.workflow_id, node.id, job.id, run_id)
    return render_jobs(session, [job])[0]


def _record_executed(session: Session, wf: int, node_id: int, job_id: int, run_id: int) -> None:
    """The executed edge node -> job; a rerun on the same node updates it (edges are unique)."""
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = upsert(EDGES).values(workflow_id=wf, name="executed", from_coll="compute_nodes",
                                from_id=node_id, to_coll="jobs", to_id=job_id,
                                data={"run_id": run_id}, rev=1)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["workflow_id", "name", "from_id", "to_coll", "to_id"],
        set_={"data": stmt.excluded.data, "rev": EDGES.c.rev + 1}))


def complete_job(session: Session, workflow: str | int, key: str, status: str, rev: str,
                 run_id: int, compute_node_key: str, result: ResultIn) -> dict[str, Any]:
    """Store the run's result, finish the job, unblock or cancel its dependents."""
    states.validate_status(status, allowed=sorted(states.FINISHED))
    job = lock_job(session, workflow, key)
    wf_id = job.workflow_id
    check_rev(job, rev)
    check_run_id(session, wf_id, run_id)
    asked = escalation.requested(job, compute_node(session, wf_id, compute_node_key))
    if result.job_key.rpartition("/")[2] != str(job.id):
        raise Invalid(f"result.job_key {result.job_key!r} does not match job {job.id}",
                      field="job_key")
    if result.run_id != run_id:
        raise Invalid(f"result.run_id {result.run_id} does not match run_id {run_id}",
                      field="run_id")
    old = job.status
    # A canceled workflow's runner reports its killed jobs; only the result is new.
    finishing = not (old == status == states.CANCELED)
    escalated = False  # killed at its memory or runtime limit: back to ready with more
    if finishing:
        if old not in (states.SUBMITTED_PENDING, states.SUBMITTED):
            raise Conflict(f"job {job.id}: illegal status change {old} -> {status} "
                           "(complete_job needs a submitted or submitted_pending job)",
                           field="status", old=old, new=status)
        escalated = escalation.escalate(session, job, status, result)
        if not escalated:
            states.change(job, status)
    else:
        job.rev += 1
    row = Result(workflow_id=wf_id, job_key=str(job.id), run_id=run_id,
                 return_code=result.return_code, exec_time_minutes=result.exec_time_minutes,
                 completion_time=result.completion_time, status=status, **asked)
    session.add(row)
    session.flush()
    session.add(Edge(workflow_id=wf_id, name="returned", from_coll="jobs", from_id=job.id,
                     to_coll="results", to_id=row.id))
    job.hash = input_hashes(session, wf_id, [job])[job.id]
    session.flush()
    if finishing and not escalated:
        failed = result.return_code != 0
        canceled = on_finished(session, wf_id, job.id, failed=failed)
        if failed:
            post_event(session, wf_id, "job", f"Job {job.id} failed with return code "
                       f"{result.return_code}; canceled {len(canceled)} dependent jobs",
                       type="failed", job_key=str(job.id), job_name=job.name, status=status,
                       return_code=result.return_code, run_id=run_id,
                       canceled_job_keys=[str(k) for k in sorted(canceled)[:1000]])
    return render_jobs(session, [job])[0]


def on_finished(session: Session, workflow_id: int, job_id: int, *, failed: bool) -> set[int]:
    """Decrement the direct dependents' counters; a failure first cancels its cascade."""
    canceled = downstream(session, workflow_id, [job_id], cancel_cascade=True) if failed else set()
    if not canceled:
        deps = select(EDGES.c.to_id).where(EDGES.c.workflow_id == workflow_id,
                                           EDGES.c.name == "blocks", EDGES.c.from_id == job_id)
        _lock_in_order(session, JOBS.c.id.in_(deps))
        session.execute(update(JOBS).where(JOBS.c.id.in_(deps), JOBS.c.blocked_count > 0)
                        .values(blocked_count=JOBS.c.blocked_count - 1))
        states.set_status(session, workflow_id, states.READY, JOBS.c.id.in_(deps),
                          JOBS.c.blocked_count == 0, among=[states.BLOCKED])
        return canceled
    set_status_many(session, workflow_id, states.CANCELED, canceled, among=[states.BLOCKED])
    # Each newly finished job (the failed one and everything canceled) releases one count.
    released: Counter[int] = Counter()
    for chunk in chunks(sorted({job_id, *canceled})):
        for dep in session.scalars(select(EDGES.c.to_id).where(
                EDGES.c.workflow_id == workflow_id, EDGES.c.name == "blocks",
                EDGES.c.from_id.in_(chunk))):
            if dep not in canceled:
                released[dep] += 1
    if released:
        n = bindparam("n")
        session.execute(
            update(JOBS).where(JOBS.c.id == bindparam("dep"), JOBS.c.blocked_count > 0)
            .values(blocked_count=case((JOBS.c.blocked_count > n, JOBS.c.blocked_count - n),
                                       else_=0)),
            [{"dep": d, "n": c} for d, c in sorted(released.items())])
        for chunk in chunks(sorted(released)):
            states.set_status(session, workflow_id, states.READY, JOBS.c.id.in_(chunk),
                              JOBS.c.blocked_count == 0, among=[states.BLOCKED])
    return canceled


def _lock_in_order(session: Session, condition: Any) -> None:
    """Row-lock jobs in key order so concurrent completions cannot deadlock (PostgreSQL)."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(select(JOBS.c.id).where(condition).order_by(JOBS.c.id).with_for_update())


def input_hashes(session: Session, workflow_id: int, jobs: Sequence[Job], *,
                 bumped_user_data: set[int] | None = None) -> dict[int, int]:
    """A 64-bit hash of what can change a job's outcome: command and input revisions.

    `bumped_user_data` counts those user data as one revision newer (a pending clear).
    """
    bumped = bumped_user_data or set()
    revs: dict[int, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for chunk in chunks([j.id for j in jobs]):
        files = (select(EDGES.c.from_id, EDGES.c.name, EDGES.c.to_id, File.rev)
                 .join(File, File.id == EDGES.c.to_id)  # type: ignore[arg-type]
                 .where(EDGES.c.workflow_id == workflow_id, EDGES.c.name == "needs",
                        EDGES.c.to_coll == "files", EDGES.c.from_id.in_(chunk)))
        data = (select(EDGES.c.from_id, EDGES.c.name, EDGES.c.to_id, UserData.rev)
                .join(UserData, UserData.id == EDGES.c.to_id)  # type: ignore[arg-type]
                .where(EDGES.c.workflow_id == workflow_id,
                       EDGES.c.name.in_(["consumes", "stores"]),
                       EDGES.c.to_coll == "user_data", EDGES.c.from_id.in_(chunk)))
        for job_id, name, target, rev in session.execute(union_all(files, data)):
            bump = 1 if name != "needs" and target in bumped else 0
            revs[job_id][name].append((target, rev + bump))
    out = {}
    for job in jobs:
        mine = revs[job.id]
        payload = json.dumps([job.command, job.invocation_script,
                              *(sorted(mine[n]) for n in ("needs", "consumes", "stores"))])
        digest = hashlib.blake2b(payload.encode(), digest_size=8).digest()
        out[job.id] = int.from_bytes(digest, "big", signed=True)
    return out


def manage_status_change(session: Session, workflow: str | int, key: str, status: str,
                         rev: str, run_id: int) -> dict[str, Any]:
    """Change one job's status through the table; resetting a finished job resets downstream."""
    states.validate_status(status)
    if status in states.FINISHED:
        raise Invalid(f"status {status!r} finishes a job; use complete_job with a result",
                      field="status")
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
        n = set_status_many(session, wf_id, states.UNINITIALIZED, below,
                            among=[s for s in states.STATUSES if s != states.DISABLED])
        post_event(session, wf_id, "job", f"Reset job {job.id} from {old} and {n} downstream "
                   "jobs to uninitialized", type="reset", job_key=str(job.id), old_status=old)
    return render_jobs(session, [job])[0]
