"""Build the NodeRequest a submitter turns into an allocation (submitters know no database)."""

from __future__ import annotations

from typing import Any

from hpcflow.autoscale.supply import Config
from hpcflow.config import Settings


def server_url(settings: Settings) -> str:
    """Where runners reach this server (0.0.0.0 listens everywhere; runners dial localhost)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    return f"http://{host}:{settings.port}{settings.url_prefix}"


def node_request(workflow_id: int, cfg: Config, settings: Settings) -> Any:
    """One node of `cfg` for the workflow, carrying the workflow's identity for clean-up."""
    from submitters.base import NodeRequest

    return NodeRequest(workflow_key=str(workflow_id), scheduler_config_id=cfg.id,
                       config=cfg.row.to_doc(), server_url=server_url(settings))
