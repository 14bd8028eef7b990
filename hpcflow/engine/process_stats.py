"""Process stats in bulk (extension): many runs' job_process_stats and their process_used edges."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from hpcflow.engine.documents import get_workflow
from hpcflow.engine.initialize import EDGES, JOBS, chunks
from hpcflow.errors import NotFound
from hpcflow.keys import parse_key
from hpcflow.models import JobProcessStats
from hpcflow.models.nodes import JobProcessStatsIn

STATS = JobProcessStats.__table__  # type: ignore[attr-defined]


def add_process_stats(
    session: Session, workflow: str | int, items: list[JobProcessStatsIn]
) -> dict[str, Any]:
    """Store every item linked to its job, or nothing when any job is unknown."""
    wf = get_workflow(session, workflow)
    job_ids = [
        parse_key(item.job_key.rpartition("/")[2], f"stats[{i}].job_key")
        for i, item in enumerate(items)
    ]
    known: set[int] = set()
    for part in chunks(set(job_ids)):
        known.update(
            session.scalars(
                select(JOBS.c.id).where(JOBS.c.workflow_id == wf.id, JOBS.c.id.in_(part))
            )
        )
    for i, job_id in enumerate(job_ids):
        if job_id not in known:
            raise NotFound(
                f"stats[{i}].job_key: job {job_id} not found in workflow {wf.id}",
                field=f"stats[{i}].job_key",
            )
    if not items:
        return {"message": "stored 0 process stats", "count": 0}
    rows = [
        {
            **item.model_dump(exclude={"key", "id_", "rev"}),
            "job_key": str(job_id),
            "workflow_id": wf.id,
            "rev": 1,
            "sampled": False,
        }
        for item, job_id in zip(items, job_ids, strict=True)
    ]
    stat_ids = session.scalars(
        insert(STATS).returning(STATS.c.id, sort_by_parameter_order=True), rows
    ).all()
    session.execute(
        insert(EDGES),
        [
            {
                "workflow_id": wf.id,
                "rev": 1,
                "name": "process_used",
                "from_coll": "jobs",
                "from_id": job_id,
                "to_coll": "job_process_stats",
                "to_id": stat_id,
                "data": None,
            }
            for job_id, stat_id in zip(job_ids, stat_ids, strict=True)
        ],
    )
    return {"message": f"stored {len(items)} process stats", "count": len(items)}
