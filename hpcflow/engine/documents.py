"""Generic create/read/update/delete of workflow-owned documents."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from hpcflow.errors import Conflict, Invalid, NotFound
from hpcflow.keys import parse_key
from hpcflow.models import Edge, Workflow
from hpcflow.models.base import Doc

T = TypeVar("T", bound=Doc)


def get_workflow(session: Session, key: str | int) -> Workflow:
    """The workflow with this key, or 404."""
    wf = session.get(Workflow, parse_key(key, "workflow"))
    if wf is None:
        raise NotFound(f"workflow {key!r} not found", field="workflow")
    return wf


def get_doc(session: Session, table: type[T], workflow_id: int, key: str | int) -> T:
    """One document of a workflow by key, or 404 naming the collection."""
    row = session.get(table, parse_key(key, "key"))
    if row is None or getattr(row, "workflow_id", workflow_id) != workflow_id:
        raise NotFound(
            f"{table.collection} {key!r} not found in workflow {workflow_id}", field="key"
        )
    return row


def sort_column(table: type[Doc], sort_by: str | None) -> Any:
    """The column to order by; unknown names are a 422 listing the allowed ones."""
    if sort_by in (None, "", "null", "_key", "_id"):
        return table.id  # type: ignore[attr-defined]
    if sort_by == "_rev":
        return table.rev  # type: ignore[attr-defined]
    columns = table.__table__.columns  # type: ignore[attr-defined]
    if sort_by not in columns:
        names = ", ".join(sorted(c.name for c in columns if c.name not in ("id", "rev")))
        raise Invalid(f"cannot sort by {sort_by!r}; use one of: _key, {names}", field="sort_by")
    return columns[sort_by]


def list_docs(
    session: Session,
    table: type[T],
    workflow_id: int | None,
    filters: dict[str, Any],
    skip: int,
    limit: int,
    sort_by: str | None = None,
    reverse: bool = False,
) -> tuple[list[T], int]:
    """A page of documents matching equality filters, with the total count."""
    conds = []
    if workflow_id is not None:
        conds.append(table.workflow_id == workflow_id)  # type: ignore[attr-defined]
    for name, value in filters.items():
        if value is None:
            continue
        if name == "_key":
            conds.append(table.id == parse_key(value, "_key", missing=Invalid))  # type: ignore[attr-defined]
        else:
            conds.append(getattr(table, name) == value)
    total = session.scalar(select(func.count()).select_from(table).where(*conds)) or 0
    col = sort_column(table, sort_by)
    order = [col.desc() if reverse else col.asc(), table.id]  # type: ignore[attr-defined]
    rows = session.scalars(select(table).where(*conds).order_by(*order).offset(skip).limit(limit))
    return list(rows), int(total)


def create_doc(
    session: Session, table: type[T], workflow_id: int | None, values: dict[str, Any]
) -> T:
    """Insert one document; a client-chosen _key is honoured when free."""
    key = values.pop("key", None)
    values = {k: v for k, v in values.items() if k not in ("id_", "rev")}
    row = table(**values)
    if workflow_id is not None:
        row.workflow_id = workflow_id  # type: ignore[attr-defined]
    if key is not None:
        row.id = parse_key(key, "_key", missing=Invalid)
        if session.get(table, row.id) is not None:
            raise Conflict(f"{table.collection} key {key!r} already exists", field="_key")
    session.add(row)
    session.flush()
    if key is not None:
        # PostgreSQL's sequence does not see explicit keys; later inserts would collide.
        from hpcflow.engine.bulk import advance_sequence

        advance_sequence(session, table)
    return row


class Revisioned(Protocol):
    """What check_rev reads: a revision, and the collection and key its message names."""

    @property
    def rev(self) -> int: ...

    @property
    def id(self) -> object: ...

    @property
    def collection(self) -> object: ...


def check_rev(row: Revisioned, rev: str | None) -> None:
    """409 when the client names a revision that is no longer current."""
    if rev is not None and str(rev) != str(row.rev):
        raise Conflict(
            f"{row.collection}/{row.id} has _rev {row.rev}; the request named stale _rev {rev}",
            field="_rev",
        )


def update_doc(session: Session, row: T, values: dict[str, Any]) -> T:
    """Replace a document's fields; a stale _rev in the body is a 409."""
    check_rev(row, values.pop("rev", None))
    values.pop("key", None)
    values.pop("id_", None)
    for name, value in values.items():
        setattr(row, name, value)
    row.rev += 1
    session.flush()
    return row


def bump_rev(session: Session, table: type[Doc], ids: list[int]) -> None:
    """Raise the revision of many rows at once (after a bulk status change)."""
    if ids:
        session.execute(
            update(table).where(table.id.in_(ids)).values(rev=table.rev + 1)  # type: ignore[attr-defined]
        )


def delete_edges_touching(
    session: Session, workflow_id: int, collection: str, ids: list[int] | None
) -> None:
    """Drop edges whose either end is one of these documents (all of the collection if None)."""
    from_match = col(Edge.from_coll) == collection
    to_match = col(Edge.to_coll) == collection
    if ids is not None:
        from_match = from_match & col(Edge.from_id).in_(ids)
        to_match = to_match & col(Edge.to_id).in_(ids)
    session.execute(
        delete(Edge).where(col(Edge.workflow_id) == workflow_id, or_(from_match, to_match))
    )


def delete_doc(session: Session, row: Doc) -> dict[str, Any]:
    """Delete one document and the edges that touch it; returns the deleted document."""
    doc = row.to_doc()  # type: ignore[attr-defined]
    workflow_id = getattr(row, "workflow_id", None)
    if workflow_id is not None:
        delete_edges_touching(session, workflow_id, row.collection, [row.id])  # type: ignore[list-item]
    session.delete(row)
    session.flush()
    return doc


def delete_all(session: Session, table: type[Doc], workflow_id: int) -> int:
    """Delete every document of a collection in a workflow, with their edges."""
    delete_edges_touching(session, workflow_id, table.collection, None)
    result = session.execute(delete(table).where(table.workflow_id == workflow_id))  # type: ignore[attr-defined]
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
