"""What the ready jobs need: torc's ready_job_requirements and prepare_jobs_for_scheduling."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.claims import GIB, is_canceled
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.initialize import JOBS
from hpcflow.units import format_duration

_C = JOBS.c


def prepare_jobs_for_scheduling(session: Session, workflow: str | int) -> dict[str, Any]:
    """Ready jobs that ask for their own compute nodes become scheduled; returns their params."""
    wf = get_workflow(session, workflow)
    if is_canceled(session, wf.id):
        return {"schedulers": []}
    wants = _C.schedule_compute_nodes.is_not(None) & (
        cast(_C.schedule_compute_nodes, String) != "null"
    )
    rows = list(
        session.execute(
            select(_C.id, _C.schedule_compute_nodes)
            .where(_C.workflow_id == wf.id, _C.status == states.READY, wants)
            .order_by(_C.id)
        )
    )
    if not rows:
        return {"schedulers": []}
    states.set_status(
        session, wf.id, states.SCHEDULED, _C.id.in_([r.id for r in rows]), among=[states.READY]
    )
    return {"schedulers": [r.schedule_compute_nodes for r in rows]}


def ready_job_requirements(
    session: Session, workflow: str | int, scheduler_config_id: str | None = None
) -> dict[str, Any]:
    """Totals over ready jobs (optionally those a scheduler config may run), in one aggregate."""
    wf = get_workflow(session, workflow)
    conds = [_C.workflow_id == wf.id, _C.status == states.READY]
    if scheduler_config_id not in (None, "", "null"):
        conds.append(
            _C.scheduler_config_id.is_(None) | (_C.scheduler_config_id == scheduler_config_id)
        )
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(_C.num_cpus), 0),
            func.coalesce(func.sum(_C.num_gpus), 0),
            func.coalesce(func.sum(_C.memory_bytes), 0),
            func.coalesce(func.max(_C.num_nodes), 0),
            func.max(_C.runtime_seconds),
        ).where(*conds)
    ).one()
    num_jobs, cpus, gpus, memory, nodes, runtime = row
    return {
        "num_jobs": int(num_jobs),
        "num_cpus": int(cpus),
        "num_gpus": int(gpus),
        "memory_gb": int(memory) / GIB,
        "max_num_nodes": int(nodes),
        "max_runtime": format_duration(runtime) if num_jobs else "",
    }
