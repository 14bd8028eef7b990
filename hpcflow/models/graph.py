"""Edges: every relationship between documents (torc's ArangoDB edge collections)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field as PField
from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Column, Field

from hpcflow.models.base import Doc, workflow_fk
from hpcflow.models.schedulers import SCHEDULER_COLLECTIONS
from hpcflow.models.workflow import Meta

# Edge collection -> (allowed _from collections, allowed _to collections).
EDGE_COLLECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "blocks": (("jobs",), ("jobs",)),
    "needs": (("jobs",), ("files",)),
    "produces": (("jobs",), ("files",)),
    "consumes": (("jobs",), ("user_data",)),
    "stores": (("jobs",), ("user_data",)),
    "requires": (("jobs",), ("resource_requirements",)),
    "returned": (("jobs",), ("results",)),
    "executed": (("compute_nodes",), ("jobs",)),
    "node_used": (("compute_nodes",), ("compute_node_stats",)),
    "process_used": (("jobs",), ("job_process_stats",)),
    "scheduled_bys": (("jobs",), SCHEDULER_COLLECTIONS),
}


class Edge(Doc, table=True):
    """A directed, named link between two documents of one workflow."""

    __tablename__ = "edges"
    __table_args__ = (
        UniqueConstraint("workflow_id", "name", "from_id", "to_coll", "to_id", name="uq_edges"),
        # from_id makes it covering: without it SQLite prefers scanning uq_edges (no stats).
        Index("ix_edges_to", "workflow_id", "name", "to_id", "from_id"),
    )
    collection: ClassVar[str] = "edges"

    workflow_id: int = workflow_fk(index=False)
    name: str
    from_coll: str
    from_id: int
    to_coll: str
    to_id: int
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's edge_model; _id names the edge collection like ArangoDB does."""
        return {
            "_from": f"{self.from_coll}/{self.from_id}",
            "_to": f"{self.to_coll}/{self.to_id}",
            "data": self.data,
            "_key": str(self.id),
            "_id": f"{self.name}/{self.id}",
            "_rev": str(self.rev),
        }


class EdgeIn(Meta):
    """Body of add_edge."""

    from_: str = PField(alias="_from")
    to: str = PField(alias="_to")
    data: dict[str, Any] | None = None
