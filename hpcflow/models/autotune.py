"""Auto-tune state: what each resource-requirements group's completed jobs really used."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import JSON, ForeignKey, Integer
from sqlmodel import Column, Field

from hpcflow.models.base import Doc, workflow_fk


def _empty_hist() -> dict[str, dict[str, int]]:
    return {"memory": {}, "cpu": {}, "runtime": {}}


class AutoTuneGroup(Doc, table=True):
    """Running sample summary of one group: counts, exact peaks and log-bucket histograms.

    Histograms (bucket index -> count, buckets 1 % wide) give percentiles of any number of
    samples in constant space, so a new sample costs the same in a million-job group.
    """

    __tablename__ = "auto_tune_groups"
    collection: ClassVar[str] = "auto_tune_groups"

    workflow_id: int = workflow_fk()
    resource_requirements_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey("resource_requirements.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        )
    )
    num_samples: int = 0
    max_memory_bytes: float = 0.0
    max_cpu_percent: float = 0.0
    max_runtime_seconds: float = 0.0
    hist: dict[str, Any] = Field(default_factory=_empty_hist, sa_column=Column(JSON))
    # The last proposal recorded (suggest mode) or applied, as resource-requirement fields.
    proposal: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    updated: float | None = None
