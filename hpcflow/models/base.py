"""Shared columns and helpers for every stored document (key, revision, owning workflow)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, Integer
from sqlmodel import Column, Field, SQLModel


def workflow_fk(*, index: bool = True) -> Any:
    """The owning-workflow column; deleting the workflow deletes the row.

    index=False for tables whose composite indexes already lead with workflow_id (jobs, edges):
    a separate one only costs every insert."""
    return Field(
        sa_column=Column(
            Integer, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False, index=index
        )
    )


class Doc(SQLModel):
    """Columns every document table has: integer key and revision counter."""

    collection: ClassVar[str] = ""

    # Typed as int: a stored row always has one; None only before the first flush.
    id: int = Field(default=None, primary_key=True)  # type: ignore[assignment]
    rev: int = Field(default=1)

    def meta(self) -> dict[str, Any]:
        """The ArangoDB-style identity fields torc clients expect."""
        return {"_key": str(self.id), "_id": f"{self.collection}/{self.id}", "_rev": str(self.rev)}


class ApiModel(BaseModel):
    """Base for request bodies: reject unknown fields, accept torc's _key/_id/_rev."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def doc_meta(collection: str, key: int, rev: int) -> dict[str, Any]:
    """Identity fields for a row fetched without its ORM object."""
    return {"_key": str(key), "_id": f"{collection}/{key}", "_rev": str(rev)}
