"""Build the NodeRequest a submitter turns into an allocation (submitters know no database)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from hpcflow.autoscale.supply import Config
from hpcflow.config import Settings


def server_url(settings: Settings) -> str:
    """Where runners reach this server: public_url, else host and port (0.0.0.0 -> hostname)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host
    if host in ("0.0.0.0", "", "::"):
        # Listening everywhere: remote compute nodes need a name, not loopback.
        host = socket.gethostname()
    return f"http://{host}:{settings.port}{settings.url_prefix}"


def node_request(workflow_id: int, cfg: Config, settings: Settings) -> Any:
    """One node of `cfg` for the workflow, carrying the workflow's identity for clean-up."""
    from submitters.base import NodeRequest

    return NodeRequest(workflow_key=str(workflow_id), scheduler_config_id=cfg.id,
                       config=cfg.row.to_doc(), server_url=server_url(settings),
                       token=settings.node_token, server_id=settings.server_id)


def submitter_options(name: str, settings: Settings) -> dict[str, Any]:
    """Constructor options of the built-in submitters, from the server's settings."""
    folder = Path(settings.node_dir)
    if name == "slurm":
        return {"script_dir": folder / "slurm"}
    if name == "local":
        return {"output_dir": folder / "local"}
    if name == "aws":
        return {"server_id": settings.server_id}
    return {}
