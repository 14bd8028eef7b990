"""Scheduler configs: how to get a compute node from Slurm, the local machine or AWS EC2."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field as PField
from sqlalchemy import JSON, Text
from sqlmodel import Column, Field

from hpcflow.models.base import Doc, workflow_fk
from hpcflow.models.workflow import Meta

# Autoscaler extension fields shared by every scheduler config.
_SCALING = ("max_nodes", "max_queued", "is_paused", "consecutive_failures", "last_error")


class SchedulerMixin(Doc):
    """Autoscaling limits and the pause guard every config carries (hpcflow extensions)."""

    name: str | None = None
    max_nodes: int = 1
    max_queued: int = 1
    is_paused: bool = False
    consecutive_failures: int = 0
    last_error: str | None = Field(default=None, sa_type=Text)

    def to_doc(self) -> dict[str, Any]:
        """Every column except the owner, plus identity fields."""
        doc = self.model_dump(exclude={"id", "rev", "workflow_id"})
        return {**doc, **self.meta()}


class SlurmScheduler(SchedulerMixin, table=True):
    """An sbatch allocation shape."""

    __tablename__ = "slurm_schedulers"
    collection: ClassVar[str] = "slurm_schedulers"

    workflow_id: int = workflow_fk()
    account: str
    gres: str | None = None
    mem: str | None = None
    nodes: int = 1
    ntasks_per_node: int | None = None
    partition: str | None = None
    qos: str | None = None
    tmp: str | None = None
    walltime: str | None = None
    extra: str | None = None
    cpus_per_task: int | None = None
    gpus: int | None = None
    constraint: str | None = None
    exclusive: bool = False
    template: str | None = Field(default=None, sa_column=Column(Text))


class LocalScheduler(SchedulerMixin, table=True):
    """Runner processes on the server's own machine."""

    __tablename__ = "local_schedulers"
    collection: ClassVar[str] = "local_schedulers"

    workflow_id: int = workflow_fk()
    memory: str | None = None
    num_cpus: int | None = None


class AwsScheduler(SchedulerMixin, table=True):
    """An EC2 instance shape."""

    __tablename__ = "aws_schedulers"
    collection: ClassVar[str] = "aws_schedulers"

    workflow_id: int = workflow_fk()
    region: str | None = None
    ami: str | None = None
    instance_type: str | None = None
    subnet_id: str | None = None
    security_group_ids: list[str] | None = Field(default=None, sa_column=Column(JSON))
    key_name: str | None = None
    iam_instance_profile: str | None = None
    spot: bool = False
    max_price: str | None = None
    root_volume_gb: int | None = None
    tags: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))
    user_data_extra: str | None = Field(default=None, sa_column=Column(Text))
    pip_spec: str | None = None
    num_cpus: int | None = None
    memory: str | None = None
    num_gpus: int | None = None
    walltime: str | None = None


class ScalingIn(Meta):
    """Autoscaler fields accepted on every scheduler config."""

    name: str | None = None
    max_nodes: int = PField(default=1, ge=0, le=100_000)
    max_queued: int = PField(default=1, ge=0, le=100_000)
    is_paused: bool = False
    consecutive_failures: int = PField(default=0, ge=0)
    last_error: str | None = None


class SlurmSchedulerIn(ScalingIn):
    """Body of add_slurm_scheduler / modify_slurm_scheduler."""

    account: str
    gres: str | None = None
    mem: str | None = None
    nodes: int = PField(default=1, ge=1, le=100_000)
    ntasks_per_node: int | None = PField(default=None, ge=1)
    partition: str | None = None
    qos: str | None = None
    tmp: str | None = None
    walltime: str | None = None
    extra: str | None = None
    cpus_per_task: int | None = PField(default=None, ge=1)
    gpus: int | None = PField(default=None, ge=0)
    constraint: str | None = None
    exclusive: bool = False
    template: str | None = None


class LocalSchedulerIn(ScalingIn):
    """Body of add_local_scheduler / modify_local_scheduler."""

    memory: str | None = None
    num_cpus: int | None = PField(default=None, ge=1)


class AwsSchedulerIn(ScalingIn):
    """Body of add_aws_scheduler / modify_aws_scheduler."""

    region: str | None = None
    ami: str | None = None
    instance_type: str | None = None
    subnet_id: str | None = None
    security_group_ids: list[str] | None = None
    key_name: str | None = None
    iam_instance_profile: str | None = None
    spot: bool = False
    max_price: str | None = None
    root_volume_gb: int | None = PField(default=None, ge=1)
    tags: dict[str, str] | None = None
    user_data_extra: str | None = None
    pip_spec: str | None = None
    num_cpus: int | None = PField(default=None, ge=1)
    memory: str | None = None
    num_gpus: int | None = PField(default=None, ge=0)
    walltime: str | None = None


SCHEDULER_COLLECTIONS = ("slurm_schedulers", "local_schedulers", "aws_schedulers")
