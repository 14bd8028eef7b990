"""Events: what happened to a workflow, for people and for `events_after_timestamp`."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import JSON, Index
from sqlmodel import Column, Field

from hpcflow.models.base import Doc, workflow_fk


class Event(Doc, table=True):
    """A free-form JSON document with a timestamp (ms since the epoch) and a category."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_workflow_ts", "workflow_id", "timestamp"),)
    collection: ClassVar[str] = "events"

    workflow_id: int = workflow_fk()
    timestamp: float
    category: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))

    def to_doc(self) -> dict[str, Any]:
        """The stored document with timestamp, category and identity fields."""
        return {
            **self.data,
            "timestamp": self.timestamp,
            "category": self.category,
            **self.meta(),
        }
