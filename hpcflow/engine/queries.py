"""Read-mostly questions about jobs and events: what a job uses and produces, what follows it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.bulk import table_of
from hpcflow.engine.documents import create_doc, get_doc, get_workflow
from hpcflow.engine.edges import set_requirements
from hpcflow.engine.initialize import EDGES, chunks, downstream
from hpcflow.engine.job_docs import render_jobs
from hpcflow.engine.specifications import Namer, job_specifications
from hpcflow.errors import NotFound
from hpcflow.models import (
    Edge,
    Event,
    File,
    Job,
    JobProcessStats,
    ResourceRequirements,
    Result,
    UserData,
)
from hpcflow.models.base import Doc
from hpcflow.models.data import UserDataIn

Page = tuple[list[dict[str, Any]], int]
JOBS, EVENTS, STATS, RESULTS = (table_of(t) for t in (Job, Event, JobProcessStats, Result))


def _job(session: Session, workflow: str, key: str) -> Job:
    wf = get_workflow(session, workflow)
    return get_doc(session, Job, wf.id, key)


def _linked(
    session: Session, table: type[Doc], job: Job, edge: str, skip: int, limit: int | None
) -> Page:
    """Documents the job points at over `edge`, in key order: a page and the total."""
    targets = select(EDGES.c.to_id).where(
        EDGES.c.workflow_id == job.workflow_id, EDGES.c.name == edge, EDGES.c.from_id == job.id
    )
    t = table_of(table)
    total = session.scalar(select(func.count()).select_from(t).where(t.c.id.in_(targets))) or 0
    rows = session.scalars(
        select(table).where(t.c.id.in_(targets)).order_by(t.c.id).offset(skip).limit(limit)
    )
    return [r.to_doc() for r in rows], int(total)  # type: ignore[attr-defined]


def files_produced_by_job(session: Session, workflow: str, key: str, skip: int, limit: int) -> Page:
    """Files the job produces (produces edges)."""
    return _linked(session, File, _job(session, workflow, key), "produces", skip, limit)


def user_data_of_job(session: Session, workflow: str, key: str, edge: str) -> Page:
    """User data the job stores or consumes (every one: the contract has no paging here)."""
    return _linked(session, UserData, _job(session, workflow, key), edge, 0, None)


def add_job_user_data(
    session: Session, workflow: str, key: str, body: UserDataIn
) -> dict[str, Any]:
    """Store user data and a stores edge from the job to it."""
    job = _job(session, workflow, key)
    ud = create_doc(session, UserData, job.workflow_id, body.model_dump(exclude={"id_"}))
    session.add(
        Edge(
            workflow_id=job.workflow_id,
            name="stores",
            from_coll="jobs",
            from_id=job.id,
            to_coll="user_data",
            to_id=ud.id,
        )
    )
    session.flush()
    return ud.to_doc()


def jobs_by_status(session: Session, workflow: str, status: str, skip: int, limit: int) -> Page:
    """Jobs with one status, in key order."""
    states.validate_status(status)
    wf = get_workflow(session, workflow)
    return _jobs(session, (JOBS.c.workflow_id == wf.id, JOBS.c.status == status), skip, limit)


def jobs_needing_file(session: Session, workflow: str, key: str, skip: int, limit: int) -> Page:
    """Jobs with a needs edge to the file."""
    wf = get_workflow(session, workflow)
    f = get_doc(session, File, wf.id, key)
    users = select(EDGES.c.from_id).where(
        EDGES.c.workflow_id == wf.id,
        EDGES.c.name == "needs",
        EDGES.c.to_coll == "files",
        EDGES.c.to_id == f.id,
    )
    return _jobs(session, (JOBS.c.workflow_id == wf.id, JOBS.c.id.in_(users)), skip, limit)


def downstream_jobs(session: Session, workflow: str, key: str, skip: int, limit: int) -> Page:
    """Every job that waits, directly or not, for this one (over blocks edges)."""
    job = _job(session, workflow, key)
    ids = sorted(downstream(session, job.workflow_id, [job.id]))
    page = ids[skip : skip + limit]
    rows = {
        j.id: j
        for chunk in chunks(page)
        for j in session.scalars(select(Job).where(JOBS.c.id.in_(chunk)))
    }
    return render_jobs(session, [rows[i] for i in page]), len(ids)


def _jobs(session: Session, where: tuple[Any, ...], skip: int, limit: int) -> Page:
    total = session.scalar(select(func.count()).select_from(JOBS).where(*where)) or 0
    rows = list(
        session.scalars(select(Job).where(*where).order_by(JOBS.c.id).offset(skip).limit(limit))
    )
    return render_jobs(session, rows), int(total)


def job_keys(session: Session, workflow: str) -> dict[str, Any]:
    """Every job key of the workflow, in key order."""
    wf = get_workflow(session, workflow)
    keys = session.scalars(select(JOBS.c.id).where(JOBS.c.workflow_id == wf.id).order_by(JOBS.c.id))
    return {"items": [str(k) for k in keys]}


def job_specification_page(session: Session, workflow: str, skip: int, limit: int) -> Page:
    """Jobs as job_specification_model documents (references by name), in key order."""
    wf = get_workflow(session, workflow)
    mine = JOBS.c.workflow_id == wf.id
    total = session.scalar(select(func.count()).select_from(JOBS).where(mine))
    ids = list(
        session.scalars(select(JOBS.c.id).where(mine).order_by(JOBS.c.id).offset(skip).limit(limit))
    )
    return job_specifications(session, wf.id, ids, Namer(session, wf.id)), int(total or 0)


def job_specification(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """One job as a job_specification_model document."""
    job = _job(session, workflow, key)
    return job_specifications(session, job.workflow_id, [job.id])[0]


def job_resource_requirements(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """The resource requirements the job requires, or 404 when it has none."""
    job = _job(session, workflow, key)
    rr_id = session.scalar(
        select(EDGES.c.to_id).where(
            EDGES.c.workflow_id == job.workflow_id,
            EDGES.c.name == "requires",
            EDGES.c.from_id == job.id,
        )
    )
    if rr_id is None:
        raise NotFound(f"job {job.id} has no resource requirements", field="key")
    return get_doc(session, ResourceRequirements, job.workflow_id, rr_id).to_doc()


def set_job_resource_requirements(
    session: Session, workflow: str, key: str, rr_key: str
) -> dict[str, Any]:
    """Make the job require these resource requirements (replacing any); returns the edge."""
    job = _job(session, workflow, key)
    rr = get_doc(session, ResourceRequirements, job.workflow_id, rr_key)
    edges = list(
        session.scalars(
            select(Edge)
            .where(
                EDGES.c.workflow_id == job.workflow_id,
                EDGES.c.name == "requires",
                EDGES.c.from_id == job.id,
            )
            .order_by(EDGES.c.id)
        )
    )
    keep = next((e for e in edges if e.to_id == rr.id), None)
    for e in edges:
        if e is not keep:
            session.delete(e)
    if keep is None:
        keep = Edge(
            workflow_id=job.workflow_id,
            name="requires",
            from_coll="jobs",
            from_id=job.id,
            to_coll="resource_requirements",
            to_id=rr.id,
        )
        session.add(keep)
    session.flush()
    set_requirements(session, job.workflow_id, {job.id})
    session.expire(job)
    return keep.to_doc()


def job_process_stats(session: Session, workflow: str, key: str) -> list[dict[str, Any]]:
    """The job's process stats, one per run (by job_key or by process_used edge)."""
    job = _job(session, workflow, key)
    linked = select(EDGES.c.to_id).where(
        EDGES.c.workflow_id == job.workflow_id,
        EDGES.c.name == "process_used",
        EDGES.c.from_id == job.id,
    )
    rows = session.scalars(
        select(JobProcessStats)
        .where(
            STATS.c.workflow_id == job.workflow_id,
            or_(STATS.c.job_key == str(job.id), STATS.c.id.in_(linked)),
        )
        .order_by(STATS.c.run_id, STATS.c.id)
    )
    return [r.to_doc() for r in rows]


def latest_result(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """The result of the job's latest run; 404 when it has none."""
    job = _job(session, workflow, key)
    row = session.scalars(
        select(Result)
        .where(RESULTS.c.workflow_id == job.workflow_id, RESULTS.c.job_key == str(job.id))
        .order_by(RESULTS.c.run_id.desc(), RESULTS.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound(f"job {job.id} has no result yet", field="key")
    return row.to_doc()


def latest_event_timestamp(session: Session, workflow: str) -> dict[str, Any]:
    """The newest event's timestamp (ms since the epoch); 0 when there is none yet."""
    wf = get_workflow(session, workflow)
    stamp = session.scalar(
        select(func.max(EVENTS.c.timestamp)).where(EVENTS.c.workflow_id == wf.id)
    )
    return {"timestamp": stamp if stamp is not None else 0}


def events_after(
    session: Session, workflow: str, timestamp: float, category: str | None, limit: int
) -> Page:
    """Events newer than the timestamp, oldest first (optionally of one category)."""
    wf = get_workflow(session, workflow)
    where = [EVENTS.c.workflow_id == wf.id, EVENTS.c.timestamp > timestamp]
    if category is not None:
        where.append(EVENTS.c.category == category)
    total = session.scalar(select(func.count()).select_from(EVENTS).where(*where)) or 0
    rows = session.scalars(
        select(Event).where(*where).order_by(EVENTS.c.timestamp, EVENTS.c.id).limit(limit)
    )
    return [r.to_doc() for r in rows], int(total)


def job_counts(session: Session, workflow: str) -> dict[str, Any]:
    """How many of the workflow's jobs are in each status (every status named), in one query."""
    wf = get_workflow(session, workflow)
    counts = dict.fromkeys(states.STATUSES, 0)
    for status, n in session.execute(
        select(JOBS.c.status, func.count())
        .where(JOBS.c.workflow_id == wf.id)
        .group_by(JOBS.c.status)
    ):
        counts[status] = int(n)
    return {"workflow_key": str(wf.id), "total": sum(counts.values()), "counts": counts}
