"""Compute nodes, their stats, per-job process stats and scheduled (launched) nodes."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field as PField
from sqlalchemy import JSON, Index, Text, text
from sqlmodel import Column, Field

from hpcflow.models.base import ApiModel, Doc, workflow_fk
from hpcflow.models.workflow import Meta


class ComputeNode(Doc, table=True):
    """A running job runner: host, process and the resources it offers."""

    __tablename__ = "compute_nodes"
    collection: ClassVar[str] = "compute_nodes"

    workflow_id: int = workflow_fk()
    hostname: str
    pid: int
    start_time: str
    duration_seconds: float | None = None
    is_active: bool = True
    resources: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    scheduler: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # hpcflow extension: lease bookkeeping (seconds since the epoch).
    last_heartbeat: float | None = None

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's compute_node_model."""
        return {
            "hostname": self.hostname,
            "pid": self.pid,
            "start_time": self.start_time,
            "duration_seconds": self.duration_seconds,
            "is_active": self.is_active,
            "resources": self.resources,
            "scheduler": self.scheduler,
            "last_heartbeat": self.last_heartbeat,
            **self.meta(),
        }


class ComputeNodeStats(Doc, table=True):
    """Resource-use samples of one compute node."""

    __tablename__ = "compute_node_stats"
    collection: ClassVar[str] = "compute_node_stats"

    workflow_id: int = workflow_fk()
    hostname: str
    stats: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    timestamp: str

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's compute_node_stats_model."""
        return {
            "hostname": self.hostname,
            "stats": self.stats,
            "timestamp": self.timestamp,
            **self.meta(),
        }


class JobProcessStats(Doc, table=True):
    """Peak and average CPU and memory of one run of one job."""

    __tablename__ = "job_process_stats"
    __table_args__ = (
        # Auto-tune reads the stats it has not sampled yet through this small partial index,
        # so a pass costs what arrived since the last one, not the workflow's whole history.
        Index(
            "ix_job_process_stats_unsampled",
            "workflow_id",
            "id",
            sqlite_where=text("sampled = 0"),
            postgresql_where=text("NOT sampled"),
        ),
    )
    collection: ClassVar[str] = "job_process_stats"

    workflow_id: int = workflow_fk()
    job_key: str = Field(index=True)
    run_id: int
    avg_cpu_percent: float
    max_cpu_percent: float
    avg_rss: float
    max_rss: float
    num_samples: int
    timestamp: str
    # hpcflow extension: taken into its group's auto-tune samples (autotune/continuous.py).
    sampled: bool = False

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's job_process_stats_model."""
        return {
            "job_key": self.job_key,
            "run_id": self.run_id,
            "avg_cpu_percent": self.avg_cpu_percent,
            "max_cpu_percent": self.max_cpu_percent,
            "avg_rss": self.avg_rss,
            "max_rss": self.max_rss,
            "num_samples": self.num_samples,
            "timestamp": self.timestamp,
            **self.meta(),
        }


class ScheduledComputeNode(Doc, table=True):
    """An allocation or instance launched for a workflow, by scheduler config."""

    __tablename__ = "scheduled_compute_nodes"
    collection: ClassVar[str] = "scheduled_compute_nodes"

    workflow_id: int = workflow_fk()
    scheduler_id: str | None = None
    scheduler_config_id: str
    status: str = Field(index=True)
    # hpcflow extensions: what was submitted, where its output goes, why it ended.
    script: str | None = Field(default=None, sa_column=Column(Text))
    output_path: str | None = None
    submitted_at: float | None = None
    message: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's scheduled_compute_nodes_model plus extensions."""
        return {
            "scheduler_id": self.scheduler_id,
            "scheduler_config_id": self.scheduler_config_id,
            "status": self.status,
            "script": self.script,
            "output_path": self.output_path,
            "submitted_at": self.submitted_at,
            "message": self.message,
            **self.meta(),
        }


class NodeResources(ApiModel):
    """torc's compute_nodes_resources: what a worker can offer."""

    num_cpus: int = PField(ge=0, le=1_000_000)
    memory_gb: float = PField(ge=0, le=1_000_000)
    num_gpus: int = PField(ge=0, le=100_000)
    num_nodes: int = PField(ge=1, le=100_000)
    time_limit: str | None = None
    scheduler_config_id: str | None = None


class ComputeNodeIn(Meta):
    """Body of add_compute_node / modify_compute_node."""

    hostname: str = PField(min_length=1)
    pid: int
    start_time: str
    duration_seconds: float | None = None
    is_active: bool = True
    resources: NodeResources
    scheduler: dict[str, Any] | None = None
    last_heartbeat: float | None = None


class ComputeNodeStatsIn(Meta):
    """Body of add_compute_node_stats / modify_compute_node_stats."""

    hostname: str
    stats: list[dict[str, Any]] = []
    timestamp: str


class JobProcessStatsIn(Meta):
    """Body of add_job_process_stats / modify_job_process_stats."""

    job_key: str
    run_id: int = PField(ge=0)
    avg_cpu_percent: float = PField(ge=0)
    max_cpu_percent: float = PField(ge=0)
    avg_rss: float = PField(ge=0)
    max_rss: float = PField(ge=0)
    num_samples: int = PField(ge=0)
    timestamp: str


class JobProcessStatsBatchIn(ApiModel):
    """Body of add_job_process_stats_bulk (extension): many runs' stats in one request."""

    stats: list[JobProcessStatsIn] = PField(max_length=10_000)


class ScheduledComputeNodeIn(Meta):
    """Body of add_scheduled_compute_node / modify_scheduled_compute_node."""

    scheduler_id: str | None = None
    scheduler_config_id: str
    status: str
    script: str | None = None
    output_path: str | None = None
    submitted_at: float | None = None
    message: str | None = None
