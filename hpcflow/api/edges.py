"""Edge collections: the relationships between documents, by hand (torc's edge routes)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.common import SKIP_LIMIT, envelope, page
from hpcflow.api.registry import operation
from hpcflow.engine import documents as docs
from hpcflow.engine import edges
from hpcflow.models.graph import EdgeIn

bp = Blueprint("edges", __name__)
BASE = "/workflows/{workflow}/edges/{name}"


@operation(
    bp,
    "GET",
    BASE,
    "list_edges",
    query=SKIP_LIMIT,
    summary="Retrieve all edges from the designated collection.",
)
def list_edges(
    session: Session, workflow: str, name: str, skip: float, limit: float | None
) -> dict[str, Any]:
    """Retrieve all edges from the designated collection."""
    wf = docs.get_workflow(session, workflow)
    first, size = page(skip, limit)
    rows, total = edges.list_edges(session, wf.id, name, first, size)
    return envelope([r.to_doc() for r in rows], first, total)


@operation(
    bp,
    "POST",
    BASE,
    "add_edge",
    body=EdgeIn,
    write=True,
    immediate=True,
    summary="Store an edge between two documents; derived job fields follow.",
)
def add_edge(session: Session, workflow: str, name: str, body: EdgeIn) -> dict[str, Any]:
    """Store an edge between two vertexes in the designated collection."""
    wf = docs.get_workflow(session, workflow)
    return edges.add_edge(session, wf.id, name, body).to_doc()


@operation(
    bp,
    "DELETE",
    BASE,
    "delete_edges",
    write=True,
    immediate=True,
    summary="Delete all edges from the designated collection.",
)
def delete_edges(session: Session, workflow: str, name: str) -> dict[str, Any]:
    """Delete all edges from the designated collection."""
    wf = docs.get_workflow(session, workflow)
    return {"message": f"deleted {edges.delete_edges(session, wf.id, name)} {name} edges"}


@operation(bp, "GET", BASE + "/{key}", "get_edge", summary="Retrieve an edge by key.")
def get_edge(session: Session, workflow: str, name: str, key: str) -> dict[str, Any]:
    """Retrieve an edge from the designated collection by key."""
    wf = docs.get_workflow(session, workflow)
    return edges.get_edge(session, wf.id, name, key).to_doc()


@operation(
    bp,
    "DELETE",
    BASE + "/{key}",
    "remove_edge",
    write=True,
    immediate=True,
    summary="Delete an edge by key; derived job fields follow.",
)
def remove_edge(session: Session, workflow: str, name: str, key: str) -> dict[str, Any]:
    """Delete an edge from the designated collection by key."""
    wf = docs.get_workflow(session, workflow)
    return edges.remove_edge(session, wf.id, name, key)
