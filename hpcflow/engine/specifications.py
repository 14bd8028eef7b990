"""Workflow specifications: create a whole workflow in one transaction, and render it back.

Creation checks the whole spec first (hpcflow/spec.py), then stores every document with bulk
inserts whose keys are reserved up front, so a 100,000-job spec is a handful of statements.
Rendering gives every reference as a name; a document without a unique name is called
'<collection>/<key>'. The rendered spec carries the workflow's and the jobs' keys (the
contract's `key` fields); drop them to post it again as a new workflow on the same server.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcflow.engine import bulk, job_docs
from hpcflow.engine.bulk import table_of
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.events import post_event
from hpcflow.engine.initialize import EDGES, JOBS, chunks
from hpcflow.engine.workflows import create_workflow, get_config
from hpcflow.models import (
    AwsScheduler,
    Edge,
    File,
    Job,
    LocalScheduler,
    ResourceRequirements,
    SlurmScheduler,
    UserData,
    Workflow,
)
from hpcflow.models.base import Doc
from hpcflow.models.schedulers import SCHEDULER_COLLECTIONS
from hpcflow.spec import JOB_DEFAULTS, JobRefs, WorkflowSpec, parse_spec
from hpcflow.units import parse_duration, parse_memory

# Identity fields a spec may carry on its documents; new documents get new keys.
META = {"key", "id_", "rev"}
SCHEDULER_TABLES: dict[str, type[Doc]] = {
    "slurm_schedulers": SlurmScheduler,
    "local_schedulers": LocalScheduler,
    "aws_schedulers": AwsScheduler,
}
NAMED: dict[str, type[Doc]] = {
    "files": File,
    "user_data": UserData,
    "jobs": Job,
    "resource_requirements": ResourceRequirements,
    **SCHEDULER_TABLES,
}
# Job field -> (edge name, collection, job is the edge's _from).
REF_EDGES = {
    "input_files": ("needs", "files", True),
    "output_files": ("produces", "files", True),
    "input_user_data": ("consumes", "user_data", True),
    "output_user_data": ("stores", "user_data", True),
    "blocked_by": ("blocks", "jobs", False),
}
BY_EDGE = {edge: name for name, (edge, _c, _o) in REF_EDGES.items()}


def create_from_spec(session: Session, data: Any) -> Workflow:
    """Store a whole workflow from a spec, or raise Invalid naming every problem."""
    spec, refs = parse_spec(data)
    values: dict[str, Any] = {"name": spec.name, "user": spec.user, "description": spec.description}
    if spec.key is not None:
        values["key"] = spec.key
    config = spec.config.model_dump(exclude=META) if spec.config else None
    wf = create_workflow(session, values, config=config)
    ids: dict[str, list[int]] = {
        "files": _store(session, File, wf.id, [f.model_dump(exclude=META) for f in spec.files]),
        "user_data": _store(
            session, UserData, wf.id, [u.model_dump(exclude=META) for u in spec.user_data]
        ),
        "resource_requirements": _store(
            session,
            ResourceRequirements,
            wf.id,
            [r.model_dump(exclude=META) for r in spec.resource_requirements],
        ),
    }
    for coll, table in SCHEDULER_TABLES.items():
        items = getattr(spec.schedulers, coll) if spec.schedulers else []
        ids[coll] = _store(session, table, wf.id, [s.model_dump(exclude=META) for s in items])
    _store_jobs(session, wf.id, spec, refs, ids)
    post_event(
        session,
        wf.id,
        "workflow",
        f"Created workflow from a specification with {len(spec.jobs)} jobs",
        type="create",
        num_jobs=len(spec.jobs),
    )
    return wf


def _store(
    session: Session, table: type[Doc], workflow_id: int, rows: list[dict[str, Any]]
) -> list[int]:
    """Insert documents of one collection; returns their keys in order."""
    if not rows:
        return []
    ids = bulk.reserve_ids(session, table, len(rows))
    columns = list(rows[0])
    bulk.insert_rows(
        session,
        table,
        ["id", "workflow_id", *columns],
        [(i, workflow_id, *(r[c] for c in columns)) for i, r in zip(ids, rows, strict=True)],
    )
    return ids


def _store_jobs(
    session: Session,
    workflow_id: int,
    spec: WorkflowSpec,
    refs: list[JobRefs],
    ids: dict[str, list[int]],
) -> None:
    needs = [
        _rr_columns(rr.memory, rr.runtime, rr.num_cpus, rr.num_gpus, rr.num_nodes)
        for rr in spec.resource_requirements
    ]
    explicit = [int(key) for j in spec.jobs if (key := j.get("key")) is not None]
    if explicit:
        bulk.check_free(session, Job, explicit)
    fields = [(f, JOB_DEFAULTS.get(f)) for f in job_docs.JOB_FIELDS]
    base = {
        **job_docs.DEFAULT_INTERNAL,
        "workflow_id": workflow_id,
        "status": "uninitialized",
        "scheduler_config_id": None,
        "schedule_compute_nodes": None,
    }
    rows = []
    for job, r in zip(spec.jobs, refs, strict=True):
        row = {f: job.get(f, default) for f, default in fields}
        row.update(base)
        key = job.get("key")
        row["id"] = int(key) if key is not None else None
        if r.resource_requirements is not None:
            row.update(needs[r.resource_requirements])
        if r.scheduler is not None:
            coll, i = r.scheduler
            row["scheduler_config_id"] = f"{coll}/{ids[coll][i]}"
        params = job.get("schedule_compute_nodes")
        if params is not None and r.schedule_scheduler is not None:
            coll, i = r.schedule_scheduler
            row["schedule_compute_nodes"] = {
                **params.model_dump(),
                "scheduler_id": f"{coll}/{ids[coll][i]}",
            }
        rows.append(row)
    job_ids = job_docs.insert_job_rows(session, rows)

    def edges(r: JobRefs) -> list[tuple[str, str, int, bool]]:
        out = [
            (edge, coll, (job_ids if coll == "jobs" else ids[coll])[i], outbound)
            for name, (edge, coll, outbound) in REF_EDGES.items()
            for i in getattr(r, name)
        ]
        if r.resource_requirements is not None:
            out.append(
                (
                    "requires",
                    "resource_requirements",
                    ids["resource_requirements"][r.resource_requirements],
                    True,
                )
            )
        if r.scheduler is not None:
            out.append(("scheduled_bys", r.scheduler[0], ids[r.scheduler[0]][r.scheduler[1]], True))
        return out

    job_docs.insert_edges(
        session, workflow_id, ((job_ids[n], edges(r)) for n, r in enumerate(refs))
    )
    bulk.refresh_stats(session, len(job_ids), Edge)


def _rr_columns(memory: str, runtime: str, cpus: int, gpus: int, nodes: int) -> dict[str, Any]:
    return {
        "num_cpus": cpus,
        "num_gpus": gpus,
        "num_nodes": nodes,
        "memory_bytes": parse_memory(memory),
        "runtime_seconds": parse_duration(runtime),
    }


class Namer:
    """Display names of a workflow's documents: the name when unique, else '<coll>/<key>'."""

    def __init__(self, session: Session, workflow_id: int) -> None:
        self.session = session
        self.wf = workflow_id
        self.names: dict[str, dict[int, str]] = defaultdict(dict)
        self._repeated: dict[str, set[str]] = {}

    def repeated(self, coll: str) -> set[str]:
        """Names used by more than one document of the collection."""
        if coll not in self._repeated:
            t = table_of(NAMED[coll])
            self._repeated[coll] = set(
                self.session.scalars(
                    select(t.c.name)
                    .where(t.c.workflow_id == self.wf, t.c.name.is_not(None))
                    .group_by(t.c.name)
                    .having(func.count() > 1)
                )
            )
        return self._repeated[coll]

    def name(self, coll: str, key: int, name: str | None) -> str:
        """One document's display name."""
        shown = name if name is not None and name not in self.repeated(coll) else f"{coll}/{key}"
        self.names[coll][key] = shown
        return shown

    def load(self, coll: str, keys: Iterable[int]) -> None:
        """Learn the names of these documents (skipping ones already known)."""
        t = table_of(NAMED[coll])
        todo = sorted(set(keys) - set(self.names[coll]))
        for chunk in chunks(todo):
            for key, name in self.session.execute(
                select(t.c.id, t.c.name).where(t.c.id.in_(chunk))
            ):
                self.name(coll, key, name)

    def ref(self, coll: str, key: int) -> str:
        """How a job spec names a document it references."""
        shown = self.names[coll][key]
        return f"{coll}/{shown}" if coll in SCHEDULER_COLLECTIONS else shown


def job_specifications(
    session: Session, workflow_id: int, job_ids: Sequence[int] | None, namer: Namer | None = None
) -> list[dict[str, Any]]:
    """job_specification_model documents for these jobs (all of the workflow when None)."""
    namer = namer or Namer(session, workflow_id)
    cols = (
        JOBS.c.id,
        JOBS.c.name,
        JOBS.c.command,
        JOBS.c.invocation_script,
        JOBS.c.cancel_on_blocking_job_failure,
        JOBS.c.supports_termination,
        JOBS.c.schedule_compute_nodes,
        JOBS.c.priority,
    )
    if job_ids is None:
        rows = list(
            session.execute(
                select(*cols).where(JOBS.c.workflow_id == workflow_id).order_by(JOBS.c.id)
            )
        )
    else:
        found = {
            r.id: r
            for chunk in chunks(job_ids)
            for r in session.execute(select(*cols).where(JOBS.c.id.in_(chunk)))
        }
        rows = [found[i] for i in job_ids if i in found]
    refs: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for edge, src, dst_coll, dst in _edges(session, workflow_id, job_ids):
        refs[src].append((edge, dst_coll, dst))
    wanted: dict[str, set[int]] = defaultdict(set)
    for items in refs.values():
        for _edge, coll, key in items:
            wanted[coll].add(key)
    for coll, keys in wanted.items():
        namer.load(coll, keys)
    for r in rows:
        namer.name("jobs", r.id, r.name)
    return [_job_spec(namer, r, refs[r.id]) for r in rows]


def _edges(
    session: Session, workflow_id: int, job_ids: Sequence[int] | None
) -> Iterable[tuple[str, int, str, int]]:
    """(edge, job, other collection, other key) for each reference edge of the jobs."""
    names = [e for e, _c, _o in REF_EDGES.values()] + ["requires", "scheduled_bys"]
    out_names = [n for n in names if n != "blocks"]
    base = [EDGES.c.workflow_id == workflow_id]
    groups = [None] if job_ids is None else list(chunks(job_ids))
    for chunk in groups:
        mine = [] if chunk is None else [EDGES.c.from_id.in_(chunk)]
        yield from session.execute(
            select(EDGES.c.name, EDGES.c.from_id, EDGES.c.to_coll, EDGES.c.to_id).where(
                *base, *mine, EDGES.c.from_coll == "jobs", EDGES.c.name.in_(out_names)
            )
        )
        theirs = [] if chunk is None else [EDGES.c.to_id.in_(chunk)]
        for src, dst in session.execute(
            select(EDGES.c.from_id, EDGES.c.to_id).where(*base, *theirs, EDGES.c.name == "blocks")
        ):
            yield "blocks", dst, "jobs", src


def _job_spec(namer: Namer, row: Any, refs: list[tuple[str, str, int]]) -> dict[str, Any]:
    lists: dict[str, list[str]] = {name: [] for name in REF_EDGES}
    single: dict[str, str | None] = {"requires": None, "scheduled_bys": None}
    for edge, coll, key in refs:
        if edge in single:
            single[edge] = namer.ref(coll, key)
        else:
            lists[BY_EDGE[edge]].append(namer.ref(coll, key))
    params = row.schedule_compute_nodes
    if params and isinstance(params.get("scheduler_id"), str):
        coll, _sep, key = params["scheduler_id"].partition("/")
        if coll in SCHEDULER_COLLECTIONS and key.isdigit():
            namer.load(coll, [int(key)])
            if int(key) in namer.names[coll]:
                params = {**params, "scheduler_id": namer.ref(coll, int(key))}
    return {
        "name": namer.names["jobs"][row.id],
        "key": str(row.id),
        "command": row.command,
        "invocation_script": row.invocation_script,
        "cancel_on_blocking_job_failure": row.cancel_on_blocking_job_failure,
        "supports_termination": row.supports_termination,
        "scheduler": single["scheduled_bys"],
        "schedule_compute_nodes": params or None,
        **{name: sorted(values) for name, values in lists.items()},
        "resource_requirements": single["requires"],
        "priority": row.priority,
    }


def render_spec(session: Session, workflow: str | int) -> dict[str, Any]:
    """The workflow as a spec: every document, references by name, no database keys."""
    wf = get_workflow(session, workflow)
    namer = Namer(session, wf.id)

    def docs(coll: str) -> list[dict[str, Any]]:
        t = table_of(NAMED[coll])
        out = []
        rows: Iterable[Any] = session.scalars(
            select(NAMED[coll]).where(t.c.workflow_id == wf.id).order_by(t.c.id)
        )
        for row in rows:
            doc = {k: v for k, v in row.to_doc().items() if k not in ("_key", "_id", "_rev")}
            doc["name"] = namer.name(coll, row.id, row.name)
            out.append(doc)
        return out

    config = {
        k: v
        for k, v in get_config(session, wf.id).to_doc().items()
        if k not in ("_key", "_id", "_rev")
    }
    spec: dict[str, Any] = {
        "name": wf.name,
        "key": str(wf.id),
        "user": wf.user,
        "description": wf.description,
        "config": config,
        "files": docs("files"),
        "user_data": docs("user_data"),
        "resource_requirements": docs("resource_requirements"),
        "schedulers": {c: docs(c) for c in SCHEDULER_COLLECTIONS},
    }
    spec["jobs"] = job_specifications(session, wf.id, None, namer)
    return spec
