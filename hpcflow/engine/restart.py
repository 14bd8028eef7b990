"""Workflow-level state: completion, cancel, resets and changed inputs (auto-tune: autotune/)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from hpcflow.engine import states
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.events import post_event
from hpcflow.engine.hashes import input_hashes
from hpcflow.engine.initialize import (
    EDGES,
    JOBS,
    chunks,
    clear_ephemeral,
    downstream,
    set_status_many,
)
from hpcflow.engine.workflows import ensure_not_archived, get_config, get_status
from hpcflow.models import File, Job, Result, UserData

# Statuses a downstream reset changes (disabled jobs belong to auto-tune and stay disabled).
RESETTABLE = [s for s in states.STATUSES if s != states.DISABLED]


def is_complete(session: Session, workflow: str | int) -> dict[str, Any]:
    """Complete when no job is unfinished; the first caller to see it runs the completion script."""
    wf = get_workflow(session, workflow)
    status = get_status(session, wf.id)
    unfinished = session.scalar(
        select(JOBS.c.id)
        .where(JOBS.c.workflow_id == wf.id, JOBS.c.status.in_(states.INCOMPLETE))
        .limit(1)
    )
    complete = unfinished is None
    needs_script = False
    if (
        complete
        and not status.has_detected_need_to_run_completion_script
        and get_config(session, wf.id).workflow_completion_script
    ):
        status.has_detected_need_to_run_completion_script = True
        status.rev += 1
        needs_script = True
    return {
        "is_canceled": status.is_canceled,
        "is_complete": complete,
        "needs_to_run_completion_script": needs_script,
    }


def cancel_workflow(session: Session, workflow: str | int) -> dict[str, Any]:
    """Flag the workflow canceled and cancel every unfinished job; runners stop theirs."""
    wf = get_workflow(session, workflow)
    status = get_status(session, wf.id, lock=True)
    status.is_canceled = True
    status.rev += 1
    n = states.set_status(session, wf.id, states.CANCELED, among=states.INCOMPLETE)
    post_event(
        session,
        wf.id,
        "workflow",
        f"Canceled workflow and {n} unfinished jobs",
        type="cancel",
        num_canceled=n,
    )
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


def reset_job_status(
    session: Session, workflow: str | int, failed_only: bool = False
) -> dict[str, Any]:
    """Every job (or each failed job of the current run and its downstream) -> uninitialized."""
    wf = get_workflow(session, workflow)
    ensure_not_archived(wf)
    if not failed_only:
        n = states.set_status(session, wf.id, states.UNINITIALIZED)
    else:
        run_id = get_status(session, wf.id).run_id
        latest: dict[str, int] = {}
        for key, code in session.execute(
            select(col(Result.job_key), col(Result.return_code))
            .where(col(Result.workflow_id) == wf.id, col(Result.run_id) == run_id)
            .order_by(col(Result.id))
        ):
            latest[key] = code
        failed = {int(k) for k, code in latest.items() if code != 0 and k.isdigit()}
        ids = failed | downstream(session, wf.id, failed)
        n = set_status_many(session, wf.id, states.UNINITIALIZED, ids, among=RESETTABLE)
    post_event(
        session,
        wf.id,
        "workflow",
        f"Reset {n} jobs to uninitialized",
        type="reset_jobs",
        failed_only=failed_only,
        num_reset=n,
    )
    return {
        "message": f"Reset job status to uninitialized failed_only={failed_only}",
        "num_reset_jobs": n,
    }


Stat = tuple[float | None, int | None]


def _changed_files(session: Session, workflow_id: int) -> dict[int, Stat]:
    """Files whose recorded st_mtime/st_size differs from the disk (or that vanished)."""
    changed: dict[int, Stat] = {}
    rows = session.execute(
        select(col(File.id), col(File.path), col(File.st_mtime), col(File.st_size)).where(
            col(File.workflow_id) == workflow_id, col(File.st_mtime).is_not(None)
        )
    )
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
        batch = list(
            session.scalars(
                select(Job)
                .where(
                    col(Job.workflow_id) == workflow_id,
                    col(Job.status) == states.DONE,
                    col(Job.hash).is_not(None),
                    col(Job.id) > last,
                )
                .order_by(col(Job.id))
                .limit(2000)
            )
        )
        if not batch:
            return
        yield batch
        last = batch[-1].id


def process_changed_job_inputs(
    session: Session, workflow: str | int, dry_run: bool = False
) -> dict[str, Any]:
    """Reset jobs whose input files, consumed user data or command changed, and downstream."""
    wf = get_workflow(session, workflow)
    if not dry_run:
        ensure_not_archived(wf)
    files = _changed_files(session, wf.id)
    seeds: set[int] = set()
    for chunk in chunks(sorted(files)):
        seeds.update(
            session.scalars(
                select(EDGES.c.from_id)
                .distinct()
                .join(JOBS, JOBS.c.id == EDGES.c.from_id)
                .where(
                    EDGES.c.workflow_id == wf.id,
                    EDGES.c.name == "needs",
                    EDGES.c.to_coll == "files",
                    EDGES.c.to_id.in_(chunk),
                    JOBS.c.status.in_([states.DONE, states.CANCELED]),
                )
            )
        )
    # Ephemeral data is cleared on restart, which changes its revision (torc semantics).
    ephemeral = {
        key
        for key, data in session.execute(
            select(col(UserData.id), col(UserData.data)).where(
                col(UserData.workflow_id) == wf.id, col(UserData.is_ephemeral).is_(True)
            )
        )
        if data
    }
    for batch in _done_jobs(session, wf.id):
        hashes = input_hashes(session, wf.id, batch, bumped_user_data=ephemeral)
        seeds.update(j.id for j in batch if hashes[j.id] != j.hash)
    candidates = seeds | downstream(session, wf.id, seeds)
    reset: list[int] = []
    for chunk in chunks(sorted(candidates)):
        reset.extend(
            session.scalars(
                select(JOBS.c.id).where(
                    JOBS.c.id.in_(chunk),
                    JOBS.c.status.in_([s for s in RESETTABLE if s != states.UNINITIALIZED]),
                )
            )
        )
    if not dry_run:
        if files:
            files_t = File.__table__  # type: ignore[attr-defined]
            session.execute(
                update(files_t)
                .where(files_t.c.id == bindparam("fid"))
                .values(st_mtime=bindparam("m"), st_size=bindparam("s"), rev=files_t.c.rev + 1),
                [{"fid": k, "m": m, "s": s} for k, (m, s) in sorted(files.items())],
            )
        clear_ephemeral(session, wf.id)
        set_status_many(session, wf.id, states.UNINITIALIZED, reset, among=RESETTABLE)
        if reset:
            post_event(
                session,
                wf.id,
                "workflow",
                f"Reset {len(reset)} jobs whose inputs "
                "changed (and their downstream) to uninitialized",
                type="changed_inputs",
                num_reset=len(reset),
                changed_file_keys=[str(k) for k in sorted(files)],
            )
    return {"reinitialized_jobs": [str(k) for k in sorted(reset)]}
