"""Give back the jobs a stopped allocation cut short, so they run again on another node.

When Slurm cancels or preempts an allocation (or a local runner is stopped), the runner gets
SIGTERM, stops its jobs and reports them `terminated` - or, when a job died of the same SIGTERM
before the runner's handler ran, `done` with return code 143 - and then marks itself inactive.
Those jobs did nothing wrong: like the jobs of a lost node they go back to ready, without using
a retry. Finishing them already released (or, on failure, canceled) their dependents, so the
jobs downstream are reset too and re-blocked, as a restart would: nothing that depends on a job
runs before the job itself has run again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.events import post_event
from hpcflow.engine.initialize import EDGES, JOBS, chunks, downstream
from hpcflow.models import ComputeNode, Result

RESULTS = Result.__table__  # type: ignore[attr-defined]
SIGTERM_CODE = 128 + 15
# Runners stop their jobs in their last moments: results older than this before the node's
# final heartbeat are the jobs' own doing, not the allocation's end.
WINDOW_SECONDS = 300.0
# Everything a reset may touch (disabled jobs belong to auto-tune and stay disabled).
RESETTABLE = [s for s in states.STATUSES if s != states.DISABLED]


def _epoch(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def cut_short(session: Session, node: ComputeNode, run_id: int, now: float) -> list[int]:
    """Jobs this node finished only because it was being stopped (terminated or SIGTERM)."""
    since = (node.last_heartbeat or now) - WINDOW_SECONDS
    keys: set[int] = set()
    r = RESULTS.c
    for key, status, code, when in session.execute(
        select(r.job_key, r.status, r.return_code, r.completion_time).where(
            r.workflow_id == node.workflow_id, r.compute_node_id == node.id, r.run_id == run_id
        )
    ):
        stopped = status == states.TERMINATED or (status == states.DONE and code == SIGTERM_CODE)
        at = _epoch(when)
        if stopped and key.isdigit() and (at is None or at >= since):
            keys.add(int(key))
    found: list[int] = []
    for chunk in chunks(sorted(keys)):
        # Still as this node left them: a job that ran again since is not touched.
        found.extend(
            session.scalars(
                select(JOBS.c.id)
                .where(
                    JOBS.c.workflow_id == node.workflow_id,
                    JOBS.c.id.in_(chunk),
                    JOBS.c.compute_node_id == node.id,
                    JOBS.c.status.in_([states.TERMINATED, states.DONE]),
                )
                .order_by(JOBS.c.id)
            )
        )
    return found


def requeue(session: Session, node: ComputeNode, job_ids: list[int], reason: str) -> int:
    """Jobs back to ready (their downstream re-blocked); returns how many jobs were reset."""
    wf = node.workflow_id
    ids = sorted(set(job_ids) | downstream(session, wf, job_ids))
    reset = 0
    for chunk in chunks(ids):
        reset += states.set_status(
            session, wf, states.UNINITIALIZED, JOBS.c.id.in_(chunk), among=RESETTABLE
        )
    session.execute(
        update(JOBS)
        .where(JOBS.c.workflow_id == wf, JOBS.c.id.in_(job_ids))
        .values(compute_node_id=None, claimed_at=None)
    )
    blocker = JOBS.alias("b")
    unfinished = (
        select(func.count())
        .select_from(EDGES.join(blocker, blocker.c.id == EDGES.c.from_id))
        .where(
            EDGES.c.workflow_id == wf,
            EDGES.c.name == "blocks",
            EDGES.c.to_id == JOBS.c.id,
            blocker.c.status.not_in(list(states.FINISHED)),
        )
        .scalar_subquery()
    )
    for chunk in chunks(ids):
        mine = JOBS.c.id.in_(chunk)
        session.execute(
            update(JOBS)
            .where(JOBS.c.workflow_id == wf, mine, JOBS.c.status == states.UNINITIALIZED)
            .values(blocked_count=unfinished)
        )
        states.set_status(
            session, wf, states.READY, mine, JOBS.c.blocked_count == 0, among=[states.UNINITIALIZED]
        )
        states.set_status(
            session,
            wf,
            states.BLOCKED,
            mine,
            JOBS.c.blocked_count > 0,
            among=[states.UNINITIALIZED],
        )
    names: dict[int, str] = {
        i: n
        for i, n in session.execute(
            select(JOBS.c.id, JOBS.c.name).where(JOBS.c.workflow_id == wf, JOBS.c.id.in_(job_ids))
        )
    }
    for job_id in job_ids:
        _event(session, wf, job_id, names.get(job_id), node, reason, len(ids) - len(job_ids))
    return reset


def _event(
    session: Session,
    wf: int,
    job_id: int,
    name: Any,
    node: ComputeNode,
    reason: str,
    downstream_reset: int,
) -> None:
    post_event(
        session,
        wf,
        "job",
        f"Job {job_id} back to ready (no retry used): compute node {node.id} was stopped: {reason}",
        type="retry",
        job_key=str(job_id),
        job_name=name,
        reason=reason,
        retry_counted=False,
        compute_node_key=str(node.id),
        downstream_reset=downstream_reset,
    )
