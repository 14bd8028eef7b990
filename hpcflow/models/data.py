"""Files, user data and resource requirements: what jobs read, write and need."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field as PField
from pydantic import field_validator
from sqlalchemy import JSON, BigInteger
from sqlmodel import Column, Field

from hpcflow.models.base import Doc, workflow_fk
from hpcflow.models.workflow import Meta
from hpcflow.units import parse_duration, parse_memory


class File(Doc, table=True):
    """A file a job needs or produces; st_mtime is recorded when it exists."""

    __tablename__ = "files"
    collection: ClassVar[str] = "files"

    workflow_id: int = workflow_fk()
    name: str | None = Field(default=None)
    path: str
    st_mtime: float | None = None
    # hpcflow extension: size at the last check, for change detection.
    st_size: int | None = Field(default=None, sa_column=Column(BigInteger))

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's file_model."""
        return {"name": self.name, "path": self.path, "st_mtime": self.st_mtime, **self.meta()}


class UserData(Doc, table=True):
    """A JSON object passed between jobs or stored by them."""

    __tablename__ = "user_data"
    collection: ClassVar[str] = "user_data"

    workflow_id: int = workflow_fk()
    name: str | None = None
    is_ephemeral: bool = False
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's user_data_model."""
        return {
            "name": self.name,
            "is_ephemeral": self.is_ephemeral,
            "data": self.data,
            **self.meta(),
        }


class ResourceRequirements(Doc, table=True):
    """CPUs, GPUs, nodes, memory and runtime a group of jobs needs."""

    __tablename__ = "resource_requirements"
    collection: ClassVar[str] = "resource_requirements"

    workflow_id: int = workflow_fk()
    name: str | None = None
    num_cpus: int = 1
    num_gpus: int = 0
    num_nodes: int = 1
    memory: str = "1m"
    runtime: str = "P0DT1M"

    def to_doc(self) -> dict[str, Any]:
        """Render as torc's resource_requirements_model."""
        return {
            "name": self.name,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "num_nodes": self.num_nodes,
            "memory": self.memory,
            "runtime": self.runtime,
            **self.meta(),
        }


class FileIn(Meta):
    """Body of add_file / modify_file."""

    name: str | None = None
    path: str = PField(min_length=1)
    st_mtime: float | None = None


class UserDataIn(Meta):
    """Body of add_user_data / modify_user_data."""

    name: str | None = None
    is_ephemeral: bool = False
    data: dict[str, Any] | None = None


class ResourceRequirementsIn(Meta):
    """Body of add_resource_requirements / modify_resource_requirements."""

    name: str | None = None
    num_cpus: int = PField(default=1, ge=0, le=100_000)
    num_gpus: int = PField(default=0, ge=0, le=10_000)
    num_nodes: int = PField(default=1, ge=1, le=100_000)
    memory: str = "1m"
    runtime: str = "P0DT1M"

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        parse_memory(value)
        return value

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str) -> str:
        parse_duration(value)
        return value
