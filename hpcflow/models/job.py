"""Jobs and their results."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field as PField
from sqlalchemy import JSON, BigInteger, Index
from sqlmodel import Column, Field, col

from hpcflow.models.base import ApiModel, Doc, workflow_fk
from hpcflow.models.workflow import Meta

DEFAULT_MEMORY_BYTES = 1024 * 1024
DEFAULT_RUNTIME_SECONDS = 60.0


class Job(Doc, table=True):
    """One command-line job; relationships live in the edges table."""

    # No (workflow_id, status) index of its own: the claim and demand indexes below lead with
    # those columns and serve status counts too (migration 0003).
    __tablename__ = "jobs"
    collection: ClassVar[str] = "jobs"

    workflow_id: int = workflow_fk(index=False)
    name: str | None = None
    command: str
    invocation_script: str | None = None
    status: str = "uninitialized"
    cancel_on_blocking_job_failure: bool = True
    supports_termination: bool = False
    schedule_compute_nodes: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # Copied from the job's resource requirements so claims read one table (torc's "internal").
    memory_bytes: int = Field(default=DEFAULT_MEMORY_BYTES, sa_column=Column(BigInteger))
    num_cpus: int = 1
    num_gpus: int = 0
    num_nodes: int = 1
    runtime_seconds: float = DEFAULT_RUNTIME_SECONDS
    scheduler_config_id: str | None = None
    hash: int | None = Field(default=None, sa_column=Column(BigInteger))
    # hpcflow extensions
    priority: int = 0
    blocked_count: int = 0
    run_id: int = 0
    compute_node_id: int | None = None
    claimed_at: float | None = None
    num_retries: int = 0
    num_escalations: int = 0
    error_category: str | None = None

    def internal(self) -> dict[str, Any]:
        """torc's jobs_internal block."""
        return {
            "memory_bytes": self.memory_bytes,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "num_nodes": self.num_nodes,
            "runtime_seconds": self.runtime_seconds,
            "scheduler_config_id": self.scheduler_config_id,
            "hash": self.hash,
        }


# Claims read ready jobs in claim order straight off an index (no sort of all candidates);
# one index per sort method (engine/claims.py), id last so equal jobs go first-in first-out.
Index(
    "ix_jobs_claim_grm",
    col(Job.workflow_id),
    col(Job.status),
    col(Job.priority).desc(),
    col(Job.num_gpus).desc(),
    col(Job.runtime_seconds).desc(),
    col(Job.memory_bytes).desc(),
    col(Job.id),
)
Index(
    "ix_jobs_claim_gmr",
    col(Job.workflow_id),
    col(Job.status),
    col(Job.priority).desc(),
    col(Job.num_gpus).desc(),
    col(Job.memory_bytes).desc(),
    col(Job.runtime_seconds).desc(),
    col(Job.id),
)


class Result(Doc, table=True):
    """The outcome of one run of one job."""

    __tablename__ = "results"
    __table_args__ = (Index("ix_results_workflow_job_run", "workflow_id", "job_key", "run_id"),)
    collection: ClassVar[str] = "results"

    workflow_id: int = workflow_fk(index=False)  # ix_results_workflow_job_run leads with it
    job_key: str
    run_id: int
    return_code: int
    exec_time_minutes: float
    completion_time: str
    status: str
    # hpcflow extensions: what the run asked for and where it ran (utilization reports).
    req_memory_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    req_num_cpus: int | None = None
    req_runtime_seconds: float | None = None
    compute_node_id: int | None = None

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's result_model."""
        return {
            "job_key": self.job_key,
            "run_id": self.run_id,
            "return_code": self.return_code,
            "exec_time_minutes": self.exec_time_minutes,
            "completion_time": self.completion_time,
            "status": self.status,
            **self.meta(),
        }


class ScheduleParams(ApiModel):
    """torc's compute_node_schedule_params."""

    max_parallel_jobs: int | None = PField(default=None, ge=1)
    num_jobs: int = PField(ge=0)
    scheduler_id: str
    start_one_worker_per_node: bool = False


class JobInternal(ApiModel):
    """torc's jobs_internal, accepted and ignored on input (the server derives it)."""

    memory_bytes: int | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    num_nodes: int | None = None
    runtime_seconds: float | None = None
    scheduler_config_id: str | None = None
    hash: int | None = None


class JobIn(Meta):
    """Body of add_job / modify_job and the items of bulk_jobs; references are _ids or keys."""

    name: str | None = None
    command: str = PField(min_length=1)
    invocation_script: str | None = None
    status: str | None = None
    schedule_compute_nodes: ScheduleParams | None = None
    cancel_on_blocking_job_failure: bool = True
    supports_termination: bool = False
    blocked_by: list[str] = PField(default_factory=list)
    input_files: list[str] = PField(default_factory=list)
    output_files: list[str] = PField(default_factory=list)
    input_user_data: list[str] = PField(default_factory=list)
    output_user_data: list[str] = PField(default_factory=list)
    resource_requirements: str | None = None
    scheduler: str | None = None
    internal: JobInternal | None = None
    priority: int = PField(default=0, ge=-1_000_000, le=1_000_000)
    # Read-only fields of the job document, accepted so a fetched document can be sent back
    # as it is (GET, edit, PUT); the engine owns them and ignores what a body says.
    run_id: int | None = PField(default=None, description="read-only; ignored on input")
    num_retries: int | None = PField(default=None, description="read-only; ignored on input")
    error_category: str | None = PField(default=None, description="read-only; ignored on input")


class JobsIn(ApiModel):
    """Body of bulk_jobs."""

    jobs: list[JobIn]


class ResultIn(Meta):
    """Body of add_result and complete_job."""

    job_key: str
    run_id: int = PField(ge=0)
    return_code: int
    exec_time_minutes: float = PField(ge=0)
    completion_time: str
    status: str
