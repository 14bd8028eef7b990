"""Node leases: declare silent or ended compute nodes lost and give their jobs back.

A claimed or running job belongs to a compute node that heartbeats. When the node stays silent
past its lease, or its allocation ended while it was still active, its jobs go back to ready
(one retry used) or, out of retries, finish as failed with error category SYSTEM. Walltime
terminations and cancelled allocations do not use a retry: the job did nothing wrong. A
cancelled allocation's runner usually reports its stopped jobs before the tick sees the
cancel; those come back too (requeue.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcflow.autoscale.demand import INF, parse_time
from hpcflow.autoscale.requeue import cut_short, requeue
from hpcflow.engine import states
from hpcflow.engine.completion import on_finished
from hpcflow.engine.events import post_event
from hpcflow.engine.workflows import now_iso
from hpcflow.models import ComputeNode, Edge, Job, Result, WorkflowConfig, WorkflowStatus

LOST_RETURN_CODE = -1
SYSTEM = "SYSTEM"
# Keys under which a runner's `scheduler` document names its allocation (slurm: job_id).
ALLOCATION_KEYS = ("scheduler_id", "job_id", "instance_id")


@dataclass
class Loss:
    """Why a node is lost and whether its jobs use up a retry."""

    node_id: int
    reason: str
    counts: bool
    # The allocation was stopped (cancel, preemption): jobs the node reported as cut short in
    # its last moments go back to ready as well, even when the node already left.
    requeue: bool = False
    # A silent node: lost only if it still has not beaten since this time when it is settled.
    silent_since: float | None = None


def allocation_of(node: Any) -> str | None:
    """The scheduler id of the allocation this runner lives in, when it said."""
    info = node.scheduler or {}
    for key in ALLOCATION_KEYS:
        if info.get(key) not in (None, ""):
            return str(info[key])
    return None


def config_of(node: Any) -> str | None:
    """The scheduler config the runner claims for (resources.scheduler_config_id)."""
    info = node.scheduler or {}
    found = (node.resources or {}).get("scheduler_config_id") or info.get("scheduler_config_id")
    return str(found) if found else None


def deadline(node: Any) -> float:
    """When the node's walltime ends (seconds since the epoch), INF when it has none."""
    limit = (node.resources or {}).get("time_limit")
    try:
        start = datetime.fromisoformat(node.start_time).timestamp()
        return start + parse_time(limit) if limit else INF
    except (ValueError, TypeError):
        return INF


def stale_nodes(nodes: Iterable[Any], now: float, lease_seconds: float) -> list[Loss]:
    """Active nodes whose last heartbeat is older than the lease (nodes that never beat keep
    running: torc's own runner does not heartbeat)."""
    losses = []
    for node in nodes:
        beat = node.last_heartbeat
        if beat is None or beat >= now - lease_seconds:
            continue
        silent = now - beat
        if deadline(node) <= now:
            losses.append(
                Loss(
                    node.id,
                    f"walltime ended; silent for {silent:.0f} s",
                    False,
                    silent_since=now - lease_seconds,
                )
            )
        else:
            losses.append(
                Loss(
                    node.id,
                    f"no heartbeat for {silent:.0f} s (lease {lease_seconds:g} s)",
                    True,
                    silent_since=now - lease_seconds,
                )
            )
    return losses


def ended_loss(node: Any, scheduler_id: str, state: str, now: float) -> Loss:
    """A node whose allocation the submitter reports ended while the node was still active."""
    reason = f"allocation {scheduler_id} ended ({state})"
    if state == "canceled":
        return Loss(node.id, reason, False, requeue=True)
    if state == "timeout":
        return Loss(node.id, reason, False)
    if deadline(node) <= now:
        return Loss(node.id, reason + "; walltime reached", False)
    return Loss(node.id, reason, True)


def declare_lost(session: Session, loss: Loss, now: float) -> tuple[list[int], list[int], bool]:
    """Mark the node inactive and settle its jobs.

    Returns the retried and failed job ids, and whether the node was declared lost at all.
    """
    node = session.get(ComputeNode, loss.node_id, with_for_update=True)
    if node is None or not (node.is_active or loss.requeue):
        return [], [], False
    if loss.silent_since is not None and (node.last_heartbeat or 0) >= loss.silent_since:
        return [], [], False  # it spoke up since the tick read it
    was_active = node.is_active
    if was_active:
        node.is_active = False
        node.rev += 1
    wf = node.workflow_id
    wc, ws = WorkflowConfig.__table__.c, WorkflowStatus.__table__.c  # type: ignore[attr-defined]
    max_retries = session.scalar(select(wc.max_retries).where(wc.workflow_id == wf))
    run_id = session.scalar(select(ws.run_id).where(ws.workflow_id == wf))
    jobs = Job.__table__.c  # type: ignore[attr-defined]
    stmt = select(Job).where(
        jobs.workflow_id == wf,
        jobs.compute_node_id == node.id,
        jobs.status.in_([states.SUBMITTED_PENDING, states.SUBMITTED]),
    )
    if session.get_bind().dialect.name != "sqlite":
        stmt = stmt.order_by(jobs.id).with_for_update()
    retried: list[int] = []
    failed: list[int] = []
    for job in session.scalars(stmt).all():
        if loss.counts and job.num_retries >= (3 if max_retries is None else max_retries):
            _fail(session, job, run_id or 0, loss, node)
            failed.append(job.id)
        else:
            _retry(session, job, run_id or 0, loss, node)
            retried.append(job.id)
    if loss.requeue:
        session.flush()
        stopped = cut_short(session, node, run_id or 0, now)
        if stopped:
            requeue(session, node, stopped, loss.reason)
            retried.extend(stopped)
    if not (was_active or retried or failed):
        return [], [], False
    post_event(
        session,
        wf,
        "compute_node",
        f"Compute node {node.id} ({node.hostname}) lost: "
        f"{loss.reason}; {len(retried)} jobs back to ready, {len(failed)} failed",
        type="lost",
        compute_node_key=str(node.id),
        reason=loss.reason,
        retried_job_keys=[str(k) for k in retried[:1000]],
        failed_job_keys=[str(k) for k in failed[:1000]],
    )
    session.flush()
    return retried, failed, True


def _result(session: Session, job: Job, run_id: int, status: str, now_iso: str) -> None:
    """Record the lost run so the job's results show every run."""
    row = Result(
        workflow_id=job.workflow_id,
        job_key=str(job.id),
        run_id=run_id,
        return_code=LOST_RETURN_CODE,
        exec_time_minutes=0.0,
        completion_time=now_iso,
        status=status,
    )
    session.add(row)
    session.flush()
    session.add(
        Edge(
            workflow_id=job.workflow_id,
            name="returned",
            from_coll="jobs",
            from_id=job.id,
            to_coll="results",
            to_id=row.id,
        )
    )


def _retry(session: Session, job: Job, run_id: int, loss: Loss, node: Any) -> None:
    """Back to ready; a run that had started gets a terminated result."""
    started = job.status == states.SUBMITTED
    if started:
        _result(session, job, run_id, states.TERMINATED, now_iso())
    states.change(job, states.READY)
    if loss.counts:
        job.num_retries += 1
    job.compute_node_id = None
    job.claimed_at = None
    used = f"retry {job.num_retries}" if loss.counts else "no retry used"
    post_event(
        session,
        job.workflow_id,
        "job",
        f"Job {job.id} back to ready ({used}): compute node {node.id} lost: {loss.reason}",
        type="retry",
        job_key=str(job.id),
        job_name=job.name,
        reason=loss.reason,
        num_retries=job.num_retries,
        retry_counted=loss.counts,
        compute_node_key=str(node.id),
    )


def _fail(session: Session, job: Job, run_id: int, loss: Loss, node: Any) -> None:
    """Out of retries: done with a failed result (SYSTEM); dependents are canceled."""
    _result(session, job, run_id, states.DONE, now_iso())
    states.change(job, states.DONE)
    job.error_category = SYSTEM
    session.flush()
    canceled = on_finished(session, job.workflow_id, job.id, failed=True)
    post_event(
        session,
        job.workflow_id,
        "job",
        f"Job {job.id} failed (SYSTEM) after "
        f"{job.num_retries} retries: compute node {node.id} lost: {loss.reason}; "
        f"canceled {len(canceled)} dependent jobs",
        type="failed",
        job_key=str(job.id),
        job_name=job.name,
        error_category=SYSTEM,
        reason=loss.reason,
        return_code=LOST_RETURN_CODE,
        num_retries=job.num_retries,
        canceled_job_keys=[str(k) for k in sorted(canceled)[:1000]],
    )
