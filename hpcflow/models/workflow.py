"""Workflows with their one-to-one config and status documents."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field as PField
from sqlalchemy import JSON, ForeignKey, Integer
from sqlmodel import Column, Field, SQLModel

from hpcflow.models.base import ApiModel, Doc

SortMethod = Literal["gpus_runtime_memory", "gpus_memory_runtime", "none"]


class Workflow(Doc, table=True):
    """A workflow: the owner of every other document."""

    __tablename__ = "workflows"
    collection: ClassVar[str] = "workflows"

    name: str | None = Field(default=None, index=True)
    user: str = Field(index=True)
    description: str | None = None
    timestamp: str | None = None
    is_archived: bool = False

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's workflow_model."""
        return {
            "name": self.name,
            "user": self.user,
            "description": self.description,
            "timestamp": self.timestamp,
            "is_archived": self.is_archived,
            **self.meta(),
        }


def _owned_pk() -> Any:
    return Field(
        sa_column=Column(Integer, ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True)
    )


class WorkflowConfig(SQLModel, table=True):
    """Per-workflow settings read by runners and the autoscaler."""

    __tablename__ = "workflow_configs"

    workflow_id: int = _owned_pk()
    rev: int = 1
    workflow_startup_script: str | None = None
    workflow_completion_script: str | None = None
    worker_startup_script: str | None = None
    compute_node_resource_stats: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    compute_node_expiration_buffer_seconds: int | None = None
    compute_node_wait_for_new_jobs_seconds: int | None = None
    compute_node_ignore_workflow_completion: bool = False
    compute_node_wait_for_healthy_database_minutes: int | None = None
    prepare_jobs_sort_method: str = "gpus_runtime_memory"
    # hpcflow extensions
    max_retries: int = 3
    auto_tune_mode: str = "off"
    # Continuous auto-tune proposes new requirements once a group has this many samples.
    auto_tune_min_samples: int = 3
    # A run killed at its memory (137) or runtime (124) limit retries with 1.5x that limit.
    auto_escalate: bool = True
    memory_limit_tolerance: float | None = None
    runtime_limit_factor: float | None = None

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's workflow_config_model."""
        doc = self.model_dump(exclude={"workflow_id", "rev"})
        key = self.workflow_id
        return {**doc, "_key": str(key), "_id": f"workflow_configs/{key}", "_rev": str(self.rev)}


class WorkflowStatus(SQLModel, table=True):
    """Run counter, cancel flag and auto-tune state of a workflow."""

    __tablename__ = "workflow_statuses"

    workflow_id: int = _owned_pk()
    rev: int = 1
    run_id: int = 0
    is_canceled: bool = False
    auto_tune_status: dict[str, Any] = Field(
        default_factory=lambda: {"enabled": False, "job_keys": []}, sa_column=Column(JSON)
    )
    has_detected_need_to_run_completion_script: bool = False

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's workflow_status_model."""
        key = self.workflow_id
        return {
            "run_id": self.run_id,
            "is_canceled": self.is_canceled,
            "auto_tune_status": self.auto_tune_status,
            "has_detected_need_to_run_completion_script": (
                self.has_detected_need_to_run_completion_script
            ),
            "_key": str(key),
            "_id": f"workflow_statuses/{key}",
            "_rev": str(self.rev),
        }


class Meta(ApiModel):
    """The identity fields a client may echo back in a body."""

    key: str | None = PField(default=None, alias="_key")
    id_: str | None = PField(default=None, alias="_id")
    rev: str | None = PField(default=None, alias="_rev")


class WorkflowIn(Meta):
    """Body of add_workflow / modify_workflow."""

    name: str | None = None
    user: str
    description: str | None = None
    timestamp: str | None = None
    is_archived: bool = False


class ResourceStatsConfig(ApiModel):
    """What the runner's resource monitor samples."""

    cpu: bool = True
    disk: bool = False
    memory: bool = True
    network: bool = False
    process: bool = True
    include_child_processes: bool = True
    recurse_child_processes: bool = False
    monitor_type: str = "aggregation"
    make_plots: bool = False
    interval: float = 10


class WorkflowConfigIn(Meta):
    """Body of modify_workflow_config."""

    workflow_startup_script: str | None = None
    workflow_completion_script: str | None = None
    worker_startup_script: str | None = None
    compute_node_resource_stats: ResourceStatsConfig | None = None
    compute_node_expiration_buffer_seconds: int | None = PField(default=None, ge=0)
    compute_node_wait_for_new_jobs_seconds: int | None = PField(default=None, ge=0)
    compute_node_ignore_workflow_completion: bool = False
    compute_node_wait_for_healthy_database_minutes: int | None = PField(default=None, ge=0)
    prepare_jobs_sort_method: SortMethod = "gpus_runtime_memory"
    max_retries: int = PField(default=3, ge=0, le=100)
    auto_tune_mode: Literal["off", "suggest", "apply"] = "off"
    auto_tune_min_samples: int = PField(default=3, ge=1, le=1_000_000)
    auto_escalate: bool = True
    memory_limit_tolerance: float | None = PField(default=None, ge=0)
    runtime_limit_factor: float | None = PField(default=None, gt=0)


class AutoTuneStatus(ApiModel):
    """torc's auto_tune_status."""

    enabled: bool = False
    job_keys: list[str] = []


class WorkflowStatusIn(Meta):
    """Body of modify_workflow_status."""

    run_id: int = PField(ge=0)
    is_canceled: bool
    auto_tune_status: AutoTuneStatus
    has_detected_need_to_run_completion_script: bool = False
