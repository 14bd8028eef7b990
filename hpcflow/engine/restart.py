"""Workflow-level state: completion, cancel, resets, changed inputs and auto-tune setup."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.completion import input_hashes
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.events import post_event
from hpcflow.engine.initialize import (
    EDGES,
    JOBS,
    chunks,
    clear_ephemeral,
    downstream,
    set_status_many,
)
from hpcflow.engine.job_docs import rr_internal
from hpcflow.engine.workflows import ensure_not_archived, get_config, get_status
from hpcflow.errors import Conflict
from hpcflow.models import File, Job, JobProcessStats, ResourceRequirements, Result, UserData
from hpcflow.units import format_duration

# Statuses a downstream reset changes (disabled jobs belong to auto-tune and stay disabled).
RESETTABLE = [s for s in states.STATUSES if s != states.DISABLED]
MIB = 1024**2
# Auto-tuned requirements ask this much more than the peak the representative job used.
TUNE_MARGIN = 1.2


def is_complete(session: Session, workflow: str | int) -> dict[str, Any]:
    """Complete when no job is unfinished; the first caller to see it runs the completion script."""
    wf = get_workflow(session, workflow)
    status = get_status(session, wf.id)
    unfinished = session.scalar(select(JOBS.c.id).where(
        JOBS.c.workflow_id == wf.id, JOBS.c.status.in_(states.INCOMPLETE)).limit(1))
    complete = unfinished is None
    needs_script = False
    if (complete and not status.has_detected_need_to_run_completion_script
            and get_config(session, wf.id).workflow_completion_script):
        status.has_detected_need_to_run_completion_script = True
        status.rev += 1
        needs_script = True
    return {"is_canceled": status.is_canceled, "is_complete": complete,
            "needs_to_run_completion_script": needs_script}


def cancel_workflow(session: Session, workflow: str | int) -> dict[str, Any]:
    """Flag the workflow canceled and cancel every unfinished job; runners stop theirs."""
    wf = get_workflow(session, workflow)
    status = get_status(session, wf.id, lock=True)
    status.is_canceled = True
    status.rev += 1
    n = states.set_status(session, wf.id, states.CANCELED, among=states.INCOMPLETE)
    post_event(session, wf.id, "workflow", f"Canceled workflow and {n} unfinished jobs",
               type="cancel", num_canceled=n)
    return {"message": "Canceled workflow", "num_canceled_jobs": n}


def reset_workflow_status(session: Session, workflow: str | int) -> dict[str, Any]:
    """Clear the cancel flag, auto-tune state and completion-script flag (run_id is kept)."""
    wf = get_workflow(session, workflow)
    status = get_status(session, wf.id, lock=True)
    status.is_canceled = False
    status.auto_tune_status = {"enabled": False, "job_keys": []}
    status.has_detected_need_to_run_completion_script = False
    status.rev += 1
    post_event(session, wf.id, "workflow", "Reset workflow status", type="reset_status")
    return {"message": "Reset workflow status"}


def reset_job_status(session: Session, workflow: str | int,
                     failed_only: bool = False) -> dict[str, Any]:
    """Every job (or each failed job of the current run and its downstream) -> uninitialized."""
    wf = get_workflow(session, workflow)
    ensure_not_archived(wf)
    if not failed_only:
        n = states.set_status(session, wf.id, states.UNINITIALIZED)
    else:
        run_id = get_status(session, wf.id).run_id
        latest: dict[str, int] = {}
        for key, code in session.execute(
                select(Result.job_key, Result.return_code)
                .where(Result.workflow_id == wf.id, Result.run_id == run_id).order_by(Result.id)):  # type: ignore[arg-type]
            latest[key] = code
        failed = {int(k) for k, code in latest.items() if code != 0 and k.isdigit()}
        ids = failed | downstream(session, wf.id, failed)
        n = set_status_many(session, wf.id, states.UNINITIALIZED, ids, among=RESETTABLE)
    post_event(session, wf.id, "workflow", f"Reset {n} jobs to uninitialized",
               type="reset_jobs", failed_only=failed_only, num_reset=n)
    return {"message": f"Reset job status to uninitialized failed_only={failed_only}",
            "num_reset_jobs": n}


Stat = tuple[float | None, int | None]


def _changed_files(session: Session, workflow_id: int) -> dict[int, Stat]:
    """Files whose recorded st_mtime/st_size differs from the disk (or that vanished)."""
    changed: dict[int, Stat] = {}
    rows = session.execute(select(File.id, File.path, File.st_mtime, File.st_size).where(
        File.workflow_id == workflow_id, File.st_mtime.is_not(None)))  # type: ignore[union-attr]
    for key, path, mtime, size in rows:
        try:
            st = os.stat(path)
        except OSError:
            changed[key] = (None, None)
            continue
        if st.st_mtime != mtime or (size is not None and st.st_size != size):
            changed[key] = (st.st_mtime, st.st_size)
    return changed


def _done_jobs(session: Session, workflow_id: int) -> Iterator[list[Job]]:
    """Done jobs that recorded an input hash, a chunk at a time (keyset by key)."""
    last = 0
    while True:
        batch = list(session.scalars(select(Job).where(
            Job.workflow_id == workflow_id, Job.status == states.DONE, Job.hash.is_not(None),  # type: ignore[union-attr]
            Job.id > last).order_by(Job.id).limit(2000)))  # type: ignore[arg-type]
        if not batch:
            return
        yield batch
        last = batch[-1].id


def process_changed_job_inputs(session: Session, workflow: str | int,
                               dry_run: bool = False) -> dict[str, Any]:
    """Reset jobs whose input files, consumed user data or command changed, and downstream."""
    wf = get_workflow(session, workflow)
    if not dry_run:
        ensure_not_archived(wf)
    files = _changed_files(session, wf.id)
    seeds: set[int] = set()
    for chunk in chunks(sorted(files)):
        seeds.update(session.scalars(
            select(EDGES.c.from_id).distinct()
            .join(JOBS, JOBS.c.id == EDGES.c.from_id)
            .where(EDGES.c.workflow_id == wf.id, EDGES.c.name == "needs",
                   EDGES.c.to_coll == "files", EDGES.c.to_id.in_(chunk),
                   JOBS.c.status.in_([states.DONE, states.CANCELED]))))
    # Ephemeral data is cleared on restart, which changes its revision (torc semantics).
    ephemeral = {key for key, data in session.execute(select(UserData.id, UserData.data).where(
        UserData.workflow_id == wf.id, UserData.is_ephemeral.is_(True))) if data}  # type: ignore[attr-defined]
    for batch in _done_jobs(session, wf.id):
        hashes = input_hashes(session, wf.id, batch, bumped_user_data=ephemeral)
        seeds.update(j.id for j in batch if hashes[j.id] != j.hash)
    candidates = seeds | downstream(session, wf.id, seeds)
    reset: list[int] = []
    for chunk in chunks(sorted(candidates)):
        reset.extend(session.scalars(select(JOBS.c.id).where(
            JOBS.c.id.in_(chunk), JOBS.c.status.in_(
                [s for s in RESETTABLE if s != states.UNINITIALIZED]))))
    if not dry_run:
        if files:
            files_t = File.__table__  # type: ignore[attr-defined]
            session.execute(
                update(files_t).where(files_t.c.id == bindparam("fid"))
                .values(st_mtime=bindparam("m"), st_size=bindparam("s"), rev=files_t.c.rev + 1),
                [{"fid": k, "m": m, "s": s} for k, (m, s) in sorted(files.items())])
        clear_ephemeral(session, wf.id)
        set_status_many(session, wf.id, states.UNINITIALIZED, reset, among=RESETTABLE)
        if reset:
            post_event(session, wf.id, "workflow", f"Reset {len(reset)} jobs whose inputs "
                       "changed (and their downstream) to uninitialized", type="changed_inputs",
                       num_reset=len(reset), changed_file_keys=[str(k) for k in sorted(files)])
    return {"reinitialized_jobs": [str(k) for k in sorted(reset)]}


def auto_tune_resource_requirements(session: Session, workflow: str | int) -> dict[str, Any]:
    """Keep one job per resource-requirements group to measure; disable the rest for now."""
    wf = get_workflow(session, workflow)
    ensure_not_archived(wf)
    status = get_status(session, wf.id, lock=True)
    if (status.auto_tune_status or {}).get("enabled"):
        raise Conflict("auto-tune is already enabled for this workflow; process its results "
                       "first", field="auto_tune_status")
    stats = get_config(session, wf.id).compute_node_resource_stats or {}
    if stats.get("process") is False:
        raise Conflict("auto-tune needs job process stats: set "
                       "compute_node_resource_stats.process to true", field="config")
    disabled = session.scalar(select(JOBS.c.id).where(
        JOBS.c.workflow_id == wf.id, JOBS.c.status == states.DISABLED).limit(1))
    if disabled is not None:
        raise Conflict(f"job {disabled} is already disabled; enable it before auto-tuning",
                       field="status")
    rows = session.execute(
        select(JOBS.c.id, EDGES.c.to_id)
        .join(EDGES, (EDGES.c.from_id == JOBS.c.id) & (EDGES.c.name == "requires")
              & (EDGES.c.workflow_id == wf.id))
        .where(JOBS.c.workflow_id == wf.id,
               JOBS.c.status.in_([states.UNINITIALIZED, states.READY]))
        .order_by(JOBS.c.id))
    chosen: dict[int, int] = {}
    others: list[int] = []
    for job_id, rr in rows:
        if rr in chosen:
            others.append(job_id)
        else:
            chosen[rr] = job_id
    if not chosen:
        raise Conflict("no ready or uninitialized job has resource requirements to tune",
                       field="jobs")
    set_status_many(session, wf.id, states.DISABLED, others,
                    among=[states.UNINITIALIZED, states.READY])
    keys = [str(j) for j in sorted(chosen.values())]
    status.auto_tune_status = {"enabled": True, "job_keys": keys}
    status.rev += 1
    post_event(session, wf.id, "workflow", f"Enabled auto-tune: {len(keys)} jobs measure "
               f"their groups, {len(others)} disabled", type="auto_tune", job_keys=keys)
    return {"message": "Enabled jobs for auto-tune mode.", "job_keys": keys}


def process_auto_tune_results(session: Session, workflow: str | int) -> dict[str, Any]:
    """Set each group's requirements from its measured job (peak plus margin); re-enable all."""
    wf = get_workflow(session, workflow)
    status = get_status(session, wf.id, lock=True)
    tune = dict(status.auto_tune_status or {})
    if not tune.get("enabled"):
        raise Conflict("auto-tune is not enabled; call auto_tune_resource_requirements first",
                       field="auto_tune_status")
    updated, skipped = [], []
    for key in tune.get("job_keys", []):
        job = session.get(Job, int(key))
        if job is None or job.workflow_id != wf.id or job.status not in states.FINISHED:
            raise Conflict(f"auto-tune job {key} has not finished "
                           f"({job.status if job else 'missing'})", field="job_keys")
        stat = session.scalars(select(JobProcessStats).where(
            JobProcessStats.workflow_id == wf.id, JobProcessStats.job_key == key)
            .order_by(JobProcessStats.run_id.desc(), JobProcessStats.id.desc())).first()  # type: ignore[attr-defined]
        result = session.scalars(select(Result).where(
            Result.workflow_id == wf.id, Result.job_key == key, Result.run_id == status.run_id)
            .order_by(Result.id.desc())).first()  # type: ignore[attr-defined]
        if stat is None or result is None:
            what = "process stats" if stat is None else "result"
            raise Conflict(f"auto-tune job {key} has no {what} for run {status.run_id}",
                           field="job_keys")
        rr_id = session.scalar(select(EDGES.c.to_id).where(
            EDGES.c.workflow_id == wf.id, EDGES.c.name == "requires", EDGES.c.from_id == job.id))
        if rr_id is None or result.return_code != 0:
            skipped.append(key)
            continue
        _tune(session, wf.id, session.get(ResourceRequirements, rr_id), stat, result)  # type: ignore[arg-type]
        updated.append(key)
    n = states.set_status(session, wf.id, states.UNINITIALIZED, among=[states.DISABLED])
    status.auto_tune_status = {"enabled": False, "job_keys": tune.get("job_keys", [])}
    status.rev += 1
    return {"message": "Processed the results of auto-tuning resource requirements.",
            "updated_job_keys": updated, "skipped_job_keys": skipped, "num_enabled_jobs": n}


def _tune(session: Session, workflow_id: int, rr: ResourceRequirements, stat: JobProcessStats,
          result: Result) -> None:
    """New requirements from one measured run; jobs of the group get the new numbers too."""
    old = rr.to_doc()
    rr.memory = f"{max(1, math.ceil(stat.max_rss * TUNE_MARGIN / MIB))}m"
    rr.num_cpus = max(1, math.ceil(stat.max_cpu_percent / 100))
    rr.runtime = format_duration(max(60, math.ceil(result.exec_time_minutes * 60 * TUNE_MARGIN)))
    rr.rev += 1
    users = select(EDGES.c.from_id).where(EDGES.c.workflow_id == workflow_id,
                                          EDGES.c.name == "requires", EDGES.c.to_id == rr.id)
    session.execute(update(JOBS).where(JOBS.c.id.in_(users)).values(**rr_internal(rr)))
    post_event(session, workflow_id, "resource_requirements",
               f"Updated resource requirements {rr.name or rr.id}", type="update",
               name=rr.name, old=old, new=rr.to_doc())
