"""torc's auto-tune: one job per resource-requirements group measures, its peak sets the group.

`auto_tune_resource_requirements` keeps one ready or uninitialized job of each group and disables
the rest; `process_auto_tune_results` sets each group from its measured job (peak x margin, never
below the peak) and re-enables the rest. Request and response shapes are torc's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcflow.autotune.groups import changed_event, fields, set_group
from hpcflow.autotune.samples import (
    MIB,
    RUNTIME_STEP,
    bounded,
    cpus_for,
    duration_text,
    memory_text,
    pair,
)
from hpcflow.engine import states
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.events import post_event
from hpcflow.engine.initialize import EDGES, JOBS, set_status_many
from hpcflow.engine.workflows import ensure_not_archived, get_config, get_status
from hpcflow.errors import Conflict
from hpcflow.models import Job, JobProcessStats, ResourceRequirements, Result

# Auto-tuned requirements ask this much more than the peak the representative job used.
TUNE_MARGIN = 1.2


def auto_tune_resource_requirements(session: Session, workflow: str | int) -> dict[str, Any]:
    """Keep one job per resource-requirements group to measure; disable the rest for now."""
    wf = get_workflow(session, workflow)
    ensure_not_archived(wf)
    status = get_status(session, wf.id, lock=True)
    if (status.auto_tune_status or {}).get("enabled"):
        raise Conflict(
            "auto-tune is already enabled for this workflow; process its results first",
            field="auto_tune_status",
        )
    stats = get_config(session, wf.id).compute_node_resource_stats or {}
    if stats.get("process") is False:
        raise Conflict(
            "auto-tune needs job process stats: set compute_node_resource_stats.process to true",
            field="config",
        )
    disabled = session.scalar(
        select(JOBS.c.id)
        .where(JOBS.c.workflow_id == wf.id, JOBS.c.status == states.DISABLED)
        .limit(1)
    )
    if disabled is not None:
        raise Conflict(
            f"job {disabled} is already disabled; enable it before auto-tuning", field="status"
        )
    rows = session.execute(
        select(JOBS.c.id, EDGES.c.to_id)
        .join(
            EDGES,
            (EDGES.c.from_id == JOBS.c.id)
            & (EDGES.c.name == "requires")
            & (EDGES.c.workflow_id == wf.id),
        )
        .where(JOBS.c.workflow_id == wf.id, JOBS.c.status.in_([states.UNINITIALIZED, states.READY]))
        .order_by(JOBS.c.id)
    )
    chosen: dict[int, int] = {}
    others: list[int] = []
    for job_id, rr in rows:
        if rr in chosen:
            others.append(job_id)
        else:
            chosen[rr] = job_id
    if not chosen:
        raise Conflict(
            "no ready or uninitialized job has resource requirements to tune", field="jobs"
        )
    set_status_many(
        session, wf.id, states.DISABLED, others, among=[states.UNINITIALIZED, states.READY]
    )
    keys = [str(j) for j in sorted(chosen.values())]
    status.auto_tune_status = {"enabled": True, "job_keys": keys}
    status.rev += 1
    post_event(
        session,
        wf.id,
        "workflow",
        f"Enabled auto-tune: {len(keys)} jobs measure their groups, {len(others)} disabled",
        type="auto_tune",
        job_keys=keys,
    )
    return {"message": "Enabled jobs for auto-tune mode.", "job_keys": keys}


def process_auto_tune_results(session: Session, workflow: str | int) -> dict[str, Any]:
    """Set each group's requirements from its measured job (peak plus margin); re-enable all."""
    wf = get_workflow(session, workflow)
    status = get_status(session, wf.id, lock=True)
    tune = dict(status.auto_tune_status or {})
    if not tune.get("enabled"):
        raise Conflict(
            "auto-tune is not enabled; call auto_tune_resource_requirements first",
            field="auto_tune_status",
        )
    measured = [_measure(session, wf.id, key, status.run_id) for key in tune.get("job_keys", [])]
    updated, skipped = [], []
    for key, found in zip(tune.get("job_keys", []), measured, strict=True):
        if found is None:
            skipped.append(key)
            continue
        rr, peak_rss, peak_cpu, seconds, samples = found
        old = fields(rr)
        new = {
            "memory": memory_text(bounded(peak_rss, peak_rss * TUNE_MARGIN, MIB)),
            "num_cpus": cpus_for(peak_cpu),
            "runtime": duration_text(bounded(seconds, seconds * TUNE_MARGIN, RUNTIME_STEP)),
        }
        n = set_group(session, wf.id, rr, new)
        changed_event(
            session,
            wf.id,
            rr,
            old,
            new,
            samples,
            "torc",
            job_key=key,
            observed={"max_rss": peak_rss, "max_cpu_percent": peak_cpu, "runtime_seconds": seconds},
            num_jobs_updated=n,
        )
        updated.append(key)
    n = states.set_status(session, wf.id, states.UNINITIALIZED, among=[states.DISABLED])
    status.auto_tune_status = {"enabled": False, "job_keys": tune.get("job_keys", [])}
    status.rev += 1
    return {
        "message": "Processed the results of auto-tuning resource requirements.",
        "updated_job_keys": updated,
        "skipped_job_keys": skipped,
        "num_enabled_jobs": n,
    }


Measured = tuple[ResourceRequirements, float, float, float, int]


def _measure(session: Session, workflow_id: int, key: str, run_id: int) -> Measured | None:
    """The group and the peaks of the representative's successful run; None to skip it.

    A 409 (nothing written) when the job has not finished or its stats have not arrived yet.
    """
    job = session.get(Job, int(key)) if key.isdigit() else None
    if job is None or job.workflow_id != workflow_id or job.status not in states.FINISHED:
        raise Conflict(
            f"auto-tune job {key} has not finished ({job.status if job else 'missing'})",
            field="job_keys",
        )
    res = Result.__table__.c  # type: ignore[attr-defined]
    results = list(
        session.scalars(
            select(Result)
            .where(res.workflow_id == workflow_id, res.job_key == key, res.run_id == run_id)
            .order_by(res.id)
        )
    )
    if not results:
        raise Conflict(f"auto-tune job {key} has no result for run {run_id}", field="job_keys")
    rr_id = session.scalar(
        select(EDGES.c.to_id).where(
            EDGES.c.workflow_id == workflow_id,
            EDGES.c.name == "requires",
            EDGES.c.from_id == job.id,
        )
    )
    good = results[-1]
    if rr_id is None or good.return_code != 0 or good.status != states.DONE:
        return None
    jps = JobProcessStats.__table__.c  # type: ignore[attr-defined]
    stats = [
        s
        for s in session.scalars(
            select(JobProcessStats)
            .where(jps.workflow_id == workflow_id, jps.job_key == key, jps.run_id == run_id)
            .order_by(jps.id)
        )
        if pair(results, s.timestamp) is good
    ]
    if not stats:
        raise Conflict(
            f"auto-tune job {key} has no process stats for run {run_id} yet "
            "(a runner stores them just after the result)",
            field="job_keys",
        )
    rr = session.get(ResourceRequirements, rr_id)
    assert rr is not None, "a requires edge points at an existing document"
    return (
        rr,
        max(s.max_rss for s in stats),
        max(s.max_cpu_percent for s in stats),
        good.exec_time_minutes * 60,
        len(stats),
    )
