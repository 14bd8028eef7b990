"""The Submitter interface: submit / batched status / cancel, and the NodeRequest it receives.

Submitters never touch the database. The autoscaler (or `hpcflow schedule-nodes`) builds a
NodeRequest from a scheduler config, calls `submit`, and stores the SubmitResult it gets back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from hpcflow.errors import SubmitterError

__all__ = ["NodeRequest", "NodeState", "SubmitResult", "Submitter", "SubmitterError"]


class NodeState(StrEnum):
    """What a scheduler says about one allocation; `unknown` is never read as 'gone'."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class NodeRequest:
    """Everything a submitter needs to start runners for one workflow on one config.

    `config` is the scheduler config document (slurm_schedulers, local_schedulers or
    aws_schedulers model). `scheduler_config_id` is its _id ('slurm_schedulers/3').
    """

    workflow_key: str
    scheduler_config_id: str
    config: dict[str, Any]
    server_url: str
    # Credentials the runner presents to the server (sent as a bearer token), if any.
    token: str | None = None
    # Identifies the launching server on every allocation/instance, for clean-up.
    server_id: str = "hpcflow"
    # Overrides of the config's own walltime and node resources, when the caller sizes nodes.
    walltime: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    # Runners per submission (e.g. Slurm array size or EC2 MinCount/MaxCount); 1 by default.
    count: int = 1
    # Extra flags for `hpcflow runner` (e.g. --idle-timeout).
    runner_args: tuple[str, ...] = ()

    @property
    def config_key(self) -> str:
        """The config's key ('3' for 'slurm_schedulers/3')."""
        return self.scheduler_config_id.rpartition("/")[2]


@dataclass(frozen=True)
class SubmitResult:
    """What a submission produced: the scheduler's id, the script it ran and its output."""

    scheduler_id: str
    script: str | None = None
    output_path: str | None = None
    # Further ids when one request made several allocations (count > 1).
    extra_ids: tuple[str, ...] = ()


class Submitter(ABC):
    """Launches hpcflow runners on some kind of compute; one instance serves many workflows."""

    name: ClassVar[str] = ""

    @abstractmethod
    def submit(self, request: NodeRequest) -> SubmitResult:
        """Start one allocation/instance running the runner; raise SubmitterError on failure."""

    @abstractmethod
    def status(self, ids: Sequence[str]) -> dict[str, NodeState]:
        """States of many allocations in one call; an id it cannot read maps to UNKNOWN."""

    @abstractmethod
    def cancel(self, ids: Sequence[str]) -> None:
        """Stop these allocations; ids already gone are not an error (idempotent)."""
