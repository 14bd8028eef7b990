"""Build the NodeRequest a submitter turns into an allocation (submitters know no database).

Runners the autoscaler launches heartbeat at the server's `heartbeat_interval_seconds` (so the
lease, that interval x `lease_intervals`, holds them) and exit when the workflow is complete or
canceled, or after an idle timeout: the workflow config's compute_node_wait_for_new_jobs_seconds
when set, else NODE_IDLE_TIMEOUT. An idle runner's free room counts as supply, so the autoscaler
launches nothing for jobs it could take; once it leaves, the next tick launches for new work.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from hpcflow.autoscale.supply import Config
from hpcflow.config import Settings

# Seconds a launched runner waits without a job before it exits (and its allocation ends).
NODE_IDLE_TIMEOUT = 60.0


def server_url(settings: Settings) -> str:
    """Where runners reach this server: public_url, else host and port (0.0.0.0 -> hostname)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host
    if host in ("0.0.0.0", "", "::"):
        # Listening everywhere: remote compute nodes need a name, not loopback.
        host = socket.gethostname()
    return f"http://{host}:{settings.port}{settings.url_prefix}"


def runner_args(cfg: Config, settings: Settings, idle_timeout: float | None) -> tuple[str, ...]:
    """Flags for `hpcflow runner`: heartbeat, idle timeout, and where job output goes."""
    idle = NODE_IDLE_TIMEOUT if idle_timeout is None else idle_timeout
    args = [
        "--heartbeat-interval",
        f"{settings.heartbeat_interval_seconds:g}",
        "--idle-timeout",
        f"{idle:g}",
    ]
    if cfg.kind in ("slurm", "local"):
        # Beside the scripts and runner logs; on Slurm that folder is shared with the nodes.
        args += ["--output-dir", str((Path(settings.node_dir) / cfg.kind / "jobs").absolute())]
    return tuple(args)


def node_request(
    workflow_id: int,
    cfg: Config,
    document: dict[str, Any],
    settings: Settings,
    idle_timeout: float | None = None,
) -> Any:
    """One node of `cfg` (whose whole `document` the submitter reads) for the workflow."""
    from submitters.base import NodeRequest

    return NodeRequest(
        workflow_key=str(workflow_id),
        scheduler_config_id=cfg.id,
        config=document,
        server_url=server_url(settings),
        token=settings.node_token,
        server_id=settings.server_id,
        runner_args=runner_args(cfg, settings, idle_timeout),
    )


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
