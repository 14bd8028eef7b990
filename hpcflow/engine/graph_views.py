"""Views over the document graph: collection names, joins along one edge, DOT graphs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import JSON, and_, func, select
from sqlalchemy.orm import Session

from hpcflow.engine.bulk import table_of
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.edges import VERTICES, check_name
from hpcflow.engine.initialize import EDGES, JOBS, chunks
from hpcflow.engine.job_docs import render_jobs
from hpcflow.errors import Invalid
from hpcflow.keys import parse_key
from hpcflow.models import EDGE_COLLECTIONS, Edge
from hpcflow.models.base import Doc

# Graph name -> (title, edge collections drawn, collection of the non-job nodes).
GRAPHS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "job_job_dependencies": ("Job - Job Dependencies", ("blocks",), None),
    "job_file_dependencies": ("Job - File Dependencies", ("produces", "needs"), "files"),
    "job_user_data_dependencies": (
        "Job - User Data Dependencies",
        ("stores", "consumes"),
        "user_data",
    ),
}


def collection_names(session: Session, workflow: str) -> dict[str, Any]:
    """Every collection a workflow has: documents first, then edges (torc's order)."""
    get_workflow(session, workflow)
    return {"names": [*sorted(VERTICES), *sorted(EDGE_COLLECTIONS)]}


def _filters(table: type[Doc], filters: dict[str, Any]) -> list[Any]:
    """Equality conditions from a filter object; unknown or unfilterable fields are a 422."""
    t = table_of(table)
    columns = t.columns
    usable = sorted(
        c.name
        for c in columns
        if not isinstance(c.type, JSON) and c.name not in ("id", "workflow_id")
    )
    conds = []
    for name, value in filters.items():
        if name == "_key":
            conds.append(t.c.id == parse_key(value, "_key", missing=Invalid))
            continue
        if name not in usable:
            raise Invalid(
                f"cannot filter {table.collection} by {name!r}; use _key or one of: "
                + ", ".join(usable),
                field=name,
            )
        kind = columns[name].type.python_type
        ok = (
            value is None
            or (isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool))
            or (kind is float and isinstance(value, int) and not isinstance(value, bool))
        )
        if not ok:
            raise Invalid(f"filter {name!r} must be a {kind.__name__}, got {value!r}", field=name)
        conds.append(columns[name].is_(None) if value is None else columns[name] == value)
    return conds


def join(
    session: Session,
    workflow: str,
    collection: str,
    edge: str,
    *,
    inbound: bool,
    filters: dict[str, Any],
    skip: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """Documents of `collection` (filtered) with each neighbour across `edge`, one row per edge.

    Inbound rows are {from: neighbour, to: document, edge}; outbound {from: document, to:
    neighbour, edge}. Paging counts these rows.
    """
    wf = get_workflow(session, workflow)
    if collection not in VERTICES:
        raise Invalid(
            f"unknown collection {collection!r}; use one of: " + ", ".join(sorted(VERTICES)),
            field="collection",
        )
    froms, tos = check_name(edge)
    if collection not in (tos if inbound else froms):
        raise Invalid(
            f"{edge} edges go from {' or '.join(froms)} to {' or '.join(tos)}; none "
            f"is {'inbound to' if inbound else 'outbound from'} {collection}",
            field="collection",
        )
    table = table_of(VERTICES[collection])
    mine_id, mine_coll = (
        (EDGES.c.to_id, EDGES.c.to_coll) if inbound else (EDGES.c.from_id, EDGES.c.from_coll)
    )
    on = and_(
        EDGES.c.workflow_id == wf.id,
        EDGES.c.name == edge,
        mine_coll == collection,
        mine_id == table.c.id,
    )
    where = [table.c.workflow_id == wf.id, *_filters(VERTICES[collection], filters)]
    base = select(table.c.id, EDGES.c.id).join(EDGES, on).where(*where)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    pairs = list(session.execute(base.order_by(table.c.id, EDGES.c.id).offset(skip).limit(limit)))
    edges = _load(session, Edge, {e for _d, e in pairs})
    mine = _docs(session, collection, {d for d, _e in pairs})
    others: dict[str, set[int]] = defaultdict(set)
    for e in edges.values():
        coll, key = (e.from_coll, e.from_id) if inbound else (e.to_coll, e.to_id)
        others[coll].add(key)
    found = {coll: _docs(session, coll, keys) for coll, keys in others.items()}
    items = []
    for doc_id, edge_id in pairs:
        e = edges[edge_id]
        other = found[e.from_coll].get(e.from_id) if inbound else found[e.to_coll].get(e.to_id)
        doc = mine[doc_id]
        items.append(
            {"from": other, "to": doc, "edge": e.to_doc()}
            if inbound
            else {"from": doc, "to": other, "edge": e.to_doc()}
        )
    return items, int(total)


def _load(session: Session, table: type[Any], ids: set[int]) -> dict[int, Any]:
    out = {}
    for chunk in chunks(sorted(ids)):
        for row in session.scalars(select(table).where(table_of(table).c.id.in_(chunk))):
            out[row.id] = row
    return out


def _docs(session: Session, collection: str, ids: set[int]) -> dict[int, dict[str, Any]]:
    """Documents by key, rendered as the API renders them (jobs with their references)."""
    rows = _load(session, VERTICES[collection], ids)
    if collection == "jobs":
        ordered = [rows[i] for i in sorted(rows)]
        return {j.id: doc for j, doc in zip(ordered, render_jobs(session, ordered), strict=True)}
    return {key: row.to_doc() for key, row in rows.items()}


def _q(text: str) -> str:
    """A DOT string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_graph(session: Session, workflow: str, name: str) -> dict[str, Any]:
    """A DOT digraph of the jobs and one kind of dependency (graph names as torc's)."""
    wf = get_workflow(session, workflow)
    if name not in GRAPHS:
        raise Invalid(f"unknown graph {name!r}; use one of: " + ", ".join(GRAPHS), field="name")
    title, edge_names, other = GRAPHS[name]
    lines = [f"strict digraph {_q(name)} {{", 'node [label="\\N"];']
    for key, label in session.execute(
        select(JOBS.c.id, JOBS.c.name).where(JOBS.c.workflow_id == wf.id).order_by(JOBS.c.id)
    ):
        lines.append(f"{_q(f'jobs/{key}')} [label={_q(label if label is not None else str(key))}];")
    arrows = list(
        session.execute(
            select(EDGES.c.from_coll, EDGES.c.from_id, EDGES.c.to_coll, EDGES.c.to_id, EDGES.c.name)
            .where(EDGES.c.workflow_id == wf.id, EDGES.c.name.in_(edge_names))
            .order_by(EDGES.c.name.desc(), EDGES.c.id)
        )
    )
    if other is not None:
        table = VERTICES[other]
        used = {dst for _fc, _f, tc, dst, _n in arrows if tc == other}
        for key, row in sorted(_load(session, table, used).items()):
            label = row.name if row.name is not None else str(key)
            lines.append(f"{_q(f'{other}/{key}')} [label={_q(label)}, shape=box];")
    for fc, f, tc, t, edge in arrows:
        lines.append(f"{_q(f'{fc}/{f}')} -> {_q(f'{tc}/{t}')} [label={_q(edge)}];")
    lines += ['labelloc="t";', f"label={_q(title)};", "}"]
    return {"graph": "\n".join(lines)}
