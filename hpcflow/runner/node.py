"""This runner as a compute node document: register, heartbeat, mark inactive."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hpcflow.errors import Conflict
from hpcflow.runner.remote import Remote
from hpcflow.runner.resources import Offer

log = logging.getLogger(__name__)
SLURM_FIELDS = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_NODELIST",
    "SLURM_NODEID",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT",
)


def scheduler_info(env: Mapping[str, str]) -> dict[str, Any] | None:
    """What the batch system says about this allocation (None outside one)."""
    found: dict[str, Any] = {
        k.removeprefix("SLURM_").lower(): env[k] for k in SLURM_FIELDS if k in env
    }
    if found:
        found = {"type": "slurm", **found}
    # Set by hpcflow's submitters (local pid, EC2 instance id) so leases can match allocations.
    for name in ("scheduler_id", "scheduler_config_id", "scheduler_type"):
        value = env.get(f"HPCFLOW_{name.upper()}")
        if value:
            found[name.removeprefix("scheduler_") if name == "scheduler_type" else name] = value
    return found or None


class ComputeNode:
    """The compute node document of this runner, kept current with heartbeats."""

    def __init__(
        self,
        remote: Remote,
        offer: Offer,
        *,
        time_limit: str | None = None,
        scheduler_config_id: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.remote = remote
        self.started = time.time()
        self.body: dict[str, Any] = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "start_time": datetime.fromtimestamp(self.started, UTC).isoformat(),
            "is_active": True,
            "resources": offer.as_resources(time_limit, scheduler_config_id),
            "scheduler": scheduler_info(os.environ if env is None else env),
            "last_heartbeat": self.started,
        }
        self.doc: dict[str, Any] = {}

    @property
    def key(self) -> str:
        """The node's key (after register)."""
        return str(self.doc["_key"])

    @property
    def id(self) -> str:
        """The node's _id, e.g. compute_nodes/5."""
        return str(self.doc.get("_id") or f"compute_nodes/{self.key}")

    def register(self) -> None:
        """POST the compute node."""
        self.doc = self.remote.add_node(self.body)

    def heartbeat(self, *, active: bool = True) -> None:
        """PUT last_heartbeat and duration (and is_active); a stale _rev is refreshed once."""
        now = time.time()
        self.body.update(last_heartbeat=now, is_active=active, duration_seconds=now - self.started)
        try:
            self.doc = self.remote.put_node(self.key, {**self.body, "_rev": self.doc.get("_rev")})
        except Conflict:
            current = self.remote.get_node(self.key)
            self.doc = self.remote.put_node(self.key, {**self.body, "_rev": current.get("_rev")})
