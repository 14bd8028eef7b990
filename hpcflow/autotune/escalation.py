"""Escalation: a run killed at its memory or runtime limit retries with 1.5x that limit.

Called by complete_job for every finished run. A run that reports return code 137 (the runner's
memory limit, the kernel's or Slurm's OOM killer: SIGKILL) or 124 (the runner's runtime limit,
GNU timeout) goes back to ready with memory x 1.5 or runtime x 1.5 on the job's own columns,
capped by the largest node of the workflow's scheduler configs (memory) and their walltime
(runtime), at most `max_retries` times per run (counted from the run's killed results, so a
restart starts afresh). `num_escalations` counts them over the job's life, apart from SYSTEM
retries. Switch it off per workflow with `auto_escalate: false`. Cost: a few reads
of the workflow's config rows, only for killed runs; nothing scales with the workflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.events import post_event
from hpcflow.models import ComputeNode, Job, Result, WorkflowConfig
from hpcflow.models.job import ResultIn
from hpcflow.models.schedulers import AwsScheduler, LocalScheduler, SlurmScheduler

MIB = 1024**2
FACTOR = 1.5
OUT_OF_MEMORY_RC = 137
TIMEOUT_RC = 124
SCHEDULER_TABLES: dict[str, Any] = {
    "slurm_schedulers": SlurmScheduler,
    "local_schedulers": LocalScheduler,
    "aws_schedulers": AwsScheduler,
}


@dataclass(frozen=True)
class Limit:
    """The job column a kill code points at, and how to name it."""

    column: str
    category: str
    what: str


LIMITS = {
    OUT_OF_MEMORY_RC: Limit("memory_bytes", "OUT_OF_MEMORY", "memory"),
    TIMEOUT_RC: Limit("runtime_seconds", "TIMEOUT", "runtime"),
}


def requested(job: Job, node: ComputeNode | None = None) -> dict[str, Any]:
    """Result columns recording what this run asked for and where it ran (before any change)."""
    return {
        "req_memory_bytes": job.memory_bytes,
        "req_num_cpus": job.num_cpus,
        "req_runtime_seconds": job.runtime_seconds,
        "compute_node_id": node.id if node is not None else job.compute_node_id,
    }


def largest(session: Session, job: Job, limit: Limit) -> tuple[float, str]:
    """The cap for an escalated limit: the biggest node (or walltime) of the configs the job
    may run on (its own config if it names one); infinite when no config says."""
    from hpcflow.autoscale.demand import INF, config_shape  # the autoscale package imports us

    best, where = INF, "no scheduler config limits it"
    found: list[tuple[float, str]] = []
    for collection, table in SCHEDULER_TABLES.items():
        stmt = select(table).where(table.workflow_id == job.workflow_id)
        if job.scheduler_config_id:
            coll, _, key = job.scheduler_config_id.rpartition("/")
            if coll != collection or not key.isdigit():
                continue
            stmt = stmt.where(table.id == int(key))
        for row in session.scalars(stmt):
            try:
                shape = config_shape(collection, row)
            except ValueError:
                continue  # a config without a usable shape launches nothing
            value = shape.memory if limit.what == "memory" else shape.walltime
            found.append((value, f"{collection}/{row.id}"))
    if found:
        best, where = max(found)
        kind = "the largest node" if limit.what == "memory" else "the longest walltime"
        where = f"{kind} of the workflow's scheduler configs ({where})"
    return best, where


def _show(limit: Limit, value: float) -> str:
    if value == math.inf:
        return "unlimited"
    if limit.what == "memory":
        return f"{value / MIB:.0f} MiB"
    return f"{value:g} s"


def _killed_before(session: Session, job: Job, run_id: int) -> int:
    """Earlier runs of the job in this run that were killed at a limit (one indexed count)."""
    res = Result.__table__.c  # type: ignore[attr-defined]
    return int(
        session.scalar(
            select(func.count()).where(
                res.workflow_id == job.workflow_id,
                res.job_key == str(job.id),
                res.run_id == run_id,
                res.status == states.DONE,
                res.return_code.in_(list(LIMITS)),
            )
        )
        or 0
    )


def escalate(session: Session, job: Job, status: str, result: ResultIn) -> bool:
    """Send a run killed at a limit back to ready with more of it; False when the job should
    finish as reported (not killed, escalation off, out of retries or at the cap)."""
    limit = LIMITS.get(result.return_code)
    if status != states.DONE or limit is None:
        return False
    config = session.get(WorkflowConfig, job.workflow_id)
    old = float(getattr(job, limit.column))
    data = {
        "job_key": str(job.id),
        "job_name": job.name,
        "resource": limit.column,
        "return_code": result.return_code,
        "run_id": result.run_id,
        "num_escalations": job.num_escalations,
    }
    if config is None or not config.auto_escalate:
        job.error_category = limit.category
        return False
    cap, where = largest(session, job, limit)
    done = _killed_before(session, job, result.run_id)
    reason = None
    if done >= config.max_retries:
        reason = (
            f"it was retried {done} times with more in run {result.run_id}, the "
            f"workflow's max_retries ({config.max_retries})"
        )
    elif old >= cap:
        reason = f"its {limit.what} ({_show(limit, old)}) is already {where}"
    if reason is not None:
        job.error_category = limit.category
        post_event(
            session,
            job.workflow_id,
            "job",
            f"Job {job.id} killed at its {limit.what} limit is not retried: {reason}",
            type="escalation_stopped",
            reason=reason,
            value=old,
            cap=None if cap == math.inf else cap,
            max_retries=config.max_retries,
            **data,
        )
        return False
    new = old * FACTOR
    if limit.what == "memory":
        new = float(math.ceil(new / MIB) * MIB)
    new = min(new, cap)
    setattr(job, limit.column, int(new) if limit.what == "memory" else new)
    job.num_escalations += 1
    job.compute_node_id = None
    job.claimed_at = None
    states.change(job, states.READY)
    data["num_escalations"] = job.num_escalations
    post_event(
        session,
        job.workflow_id,
        "job",
        f"Job {job.id} killed at its {limit.what} limit "
        f"({_show(limit, old)}); retry {done + 1} of {config.max_retries} with "
        f"{_show(limit, new)}" + (" (capped)" if new == cap else ""),
        type="escalated",
        old=old,
        new=new,
        attempt=done + 1,
        max_retries=config.max_retries,
        cap=None if cap == math.inf else cap,
        **data,
    )
    return True
