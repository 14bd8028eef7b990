"""Job logs: the tail of each run's stdout and stderr, uploaded by the runner (extension)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field as PField
from sqlalchemy import BigInteger, Index, Text
from sqlmodel import Column, Field

from hpcflow.models.base import ApiModel, Doc, workflow_fk
from hpcflow.models.workflow import Meta


class JobLog(Doc, table=True):
    """stdout/stderr tails of one run of one job, so logs survive node-local disks."""

    __tablename__ = "job_logs"
    __table_args__ = (Index("ix_job_logs_workflow_job_run", "workflow_id", "job_key", "run_id"),)
    collection: ClassVar[str] = "job_logs"

    workflow_id: int = workflow_fk()
    job_key: str
    run_id: int
    stdout: str = Field(default="", sa_column=Column(Text, nullable=False))
    stderr: str = Field(default="", sa_column=Column(Text, nullable=False))
    # Full sizes on the node; the stored text is at most the runner's tail size.
    stdout_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    stderr_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    truncated: bool = False
    compute_node_key: str | None = None
    hostname: str | None = None
    timestamp: str

    def to_doc(self) -> dict[str, Any]:
        """Render as a job_log document."""
        return {
            "job_key": self.job_key,
            "run_id": self.run_id,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdout_bytes": self.stdout_bytes,
            "stderr_bytes": self.stderr_bytes,
            "truncated": self.truncated,
            "compute_node_key": self.compute_node_key,
            "hostname": self.hostname,
            "timestamp": self.timestamp,
            **self.meta(),
        }


# 16 MiB per stream is far past any sensible tail; anything bigger is a mistake.
MAX_LOG_CHARS = 16 * 1024 * 1024


class JobLogIn(Meta):
    """Body of add_job_log and the items of add_job_logs."""

    job_key: str = PField(min_length=1)
    run_id: int = PField(ge=0)
    stdout: str = PField(default="", max_length=MAX_LOG_CHARS)
    stderr: str = PField(default="", max_length=MAX_LOG_CHARS)
    stdout_bytes: int = PField(default=0, ge=0)
    stderr_bytes: int = PField(default=0, ge=0)
    truncated: bool = False
    compute_node_key: str | None = None
    hostname: str | None = None
    timestamp: str


class JobLogsIn(ApiModel):
    """Body of add_job_logs."""

    logs: list[JobLogIn] = PField(max_length=10_000)
