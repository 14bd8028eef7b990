"""Helpers for auto-tune tests: configure a workflow, finish jobs with given use, read rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hpcflow.models import AutoTuneGroup, Job, JobProcessStats
from tests.autoscale.helpers import sessions
from tests.engine.helpers import Api

GIB = 1024**3
MIB = 1024**2


def configure(api: Api, **fields: Any) -> dict[str, Any]:
    """PUT the workflow config with some fields changed; returns the new config."""
    current = api.get("/config")
    body = {k: v for k, v in current.items() if k not in ("_key", "_id")}
    return api.put("/config", {**body, **fields})


def finish(
    api: Api,
    node: str,
    job: dict[str, Any],
    *,
    code: int = 0,
    minutes: float = 1.0,
    rss: float | None = None,
    cpu: float = 90.0,
    stamp: str = "2024-01-01T00:00:00",
    stats_stamp: str | None = None,
) -> dict[str, Any]:
    """Start and complete a claimed job, then store its process stats like a runner does."""
    started = api.start(job, node)
    run = api.run_id()
    result = {
        "job_key": job["_key"],
        "run_id": run,
        "return_code": code,
        "exec_time_minutes": minutes,
        "completion_time": stamp,
        "status": "done",
    }
    done = api.post(f"/jobs/{job['_key']}/complete_job/done/{started['_rev']}/{run}/{node}", result)
    if rss is not None:
        api.post(
            "/job_process_stats",
            {
                "job_key": job["_key"],
                "run_id": run,
                "avg_cpu_percent": cpu * 0.8,
                "max_cpu_percent": cpu,
                "avg_rss": rss / 2,
                "max_rss": rss,
                "num_samples": 5,
                "timestamp": stats_stamp or stamp,
            },
        )
    return done


def deactivate(api: Api, node: str) -> None:
    """Mark a compute node inactive (so the autoscaler does not count its room as supply)."""
    doc = api.get(f"/compute_nodes/{node}")
    api.put(
        f"/compute_nodes/{node}",
        {k: v for k, v in doc.items() if k != "_id"} | {"is_active": False},
    )


def job_rows(app: Any, workflow: str) -> dict[str, Job]:
    """Every job row of the workflow by name."""
    with sessions(app)() as s:
        jobs = Job.__table__.c  # type: ignore[attr-defined]
        return {j.name: j for j in s.scalars(select(Job).where(jobs.workflow_id == int(workflow)))}


def group_row(app: Any, rr_ref: str) -> AutoTuneGroup | None:
    """The auto-tune state of a resource-requirements document."""
    with sessions(app)() as s:
        groups = AutoTuneGroup.__table__.c  # type: ignore[attr-defined]
        return s.scalar(
            select(AutoTuneGroup).where(
                groups.resource_requirements_id == int(rr_ref.split("/")[-1])
            )
        )


def unsampled(app: Any, workflow: str) -> int:
    """How many stats documents auto-tune has not taken in yet."""
    with sessions(app)() as s:
        stats = JobProcessStats.__table__.c  # type: ignore[attr-defined]
        return len(
            list(
                s.scalars(
                    select(stats.id).where(
                        stats.workflow_id == int(workflow), stats.sampled.is_(False)
                    )
                )
            )
        )
