"""EC2 user data for the AWS submitter: the boot script that installs and starts the runner."""

from __future__ import annotations

import math
from functools import cache

import jinja2

from hpcflow.errors import SubmitterError
from submitters.base import NodeRequest

DEFAULT_PIP_SPEC = "hpcflow"
VENV = "/opt/hpcflow/venv"
LOG_PATH = "/var/log/hpcflow-runner.log"
USER_DATA_LIMIT = 16 * 1024  # EC2 rejects larger user data (before base64)
HARD_STOP_GRACE_MINUTES = 15


@cache
def _environment() -> jinja2.Environment:
    import templates

    return templates.environment("aws")


def _hard_stop_minutes(walltime: str | None) -> int | None:
    """Minutes after boot when the instance powers off whatever the runner does."""
    if not walltime:
        return None
    from hpcflow.runner.resources import parse_time_limit

    try:
        seconds = parse_time_limit(walltime)
    except ValueError as exc:
        raise SubmitterError(f"aws config: invalid walltime {walltime!r}: {exc}") from exc
    return math.ceil(seconds / 60) + HARD_STOP_GRACE_MINUTES


def runner_args(request: NodeRequest) -> list[str]:
    """Resource flags for `hpcflow runner`: the request's overrides, else the config's shape."""
    args: list[str] = []
    for key in ("num_cpus", "memory", "num_gpus"):
        value = request.resources.get(key, request.config.get(key))
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return [*args, *request.runner_args]


def render_user_data(
    request: NodeRequest,
    *,
    node_name: str,
    hpcflow: str | None = None,
    token: str | None = None,
    log_path: str = LOG_PATH,
) -> str:
    """The boot script of one instance (token passed separately so it can be redacted)."""
    config = request.config
    pip_spec = config.get("pip_spec")
    pip_spec = DEFAULT_PIP_SPEC if pip_spec is None else pip_spec.strip()
    walltime = request.walltime or config.get("walltime")
    return (
        _environment()
        .get_template("user_data.sh.j2")
        .render(
            workflow_key=request.workflow_key,
            scheduler_config_id=request.scheduler_config_id,
            node_name=node_name,
            server_url=request.server_url,
            token=token,
            user_data_extra=(config.get("user_data_extra") or "").rstrip(),
            pip_spec=pip_spec,
            venv=VENV,
            log_path=log_path,
            walltime=walltime,
            hard_stop_minutes=_hard_stop_minutes(walltime),
            hpcflow=hpcflow or (f"{VENV}/bin/hpcflow" if pip_spec else "hpcflow"),
            runner_args=runner_args(request),
        )
    )
