"""The sbatch script of one NodeRequest: template context, checks on config values, rendering."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import templates
from hpcflow.errors import SubmitterError
from hpcflow.units import parse_duration, parse_slurm_time
from submitters.base import NodeRequest

DEFAULT_TEMPLATE = "runner.sh.j2"
# slurm_schedulers fields that become #SBATCH lines (torc's contract, then hpcflow extensions).
FIELDS = (
    "account",
    "partition",
    "qos",
    "nodes",
    "walltime",
    "mem",
    "gres",
    "tmp",
    "ntasks_per_node",
    "extra",
    "cpus_per_task",
    "gpus",
    "constraint",
    "exclusive",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# #SBATCH lines are comments to bash but split on whitespace by sbatch: no spaces or quotes.
_PLAIN = re.compile(r"^[^\s'\"]+$")


@dataclass(frozen=True)
class Script:
    """A rendered sbatch script and the names that find its job again."""

    text: str
    job_name: str
    # Unique per submission; in the job's comment, so a lost sbatch answer can be looked up.
    marker: str
    # The #SBATCH --output pattern (%j is the job id).
    output: str


def safe(text: str) -> str:
    """Text reduced to characters every Slurm field and file name accepts."""
    return _UNSAFE.sub("_", text) or "_"


def slurm_time(text: str) -> str:
    """A walltime as sbatch --time accepts it: Slurm form kept, ISO 8601 converted."""
    text = text.strip()
    try:
        parse_slurm_time(text)
        return text
    except ValueError:
        pass
    seconds = round(parse_duration(text))  # ValueError names the text
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def extra_options(extra: str | None) -> list[str]:
    """`extra` ('--mail-type=END -C knl') as one option per #SBATCH line."""
    options: list[str] = []
    for word in shlex.split(extra or "", comments=True):
        if "\n" in word:
            raise ValueError(f"option {word!r} spans lines")
        if word.startswith("-") or not options:
            options.append(word)
        else:  # the value of a short option given as a separate word
            options[-1] += f" {word}"
    return options


def values(request: NodeRequest) -> dict[str, Any]:
    """The config's sbatch fields with the request's overrides, checked for stray characters."""
    found = {name: request.config.get(name) for name in FIELDS}
    found.update({k: v for k, v in request.resources.items() if k in FIELDS})
    if request.walltime:
        found["walltime"] = request.walltime
    for name, value in found.items():
        if isinstance(value, str) and name != "extra" and value and not _PLAIN.match(value):
            raise SubmitterError(
                f"{request.scheduler_config_id}: {name} {value!r} may not contain spaces or quotes"
            )
    if found["walltime"]:
        try:
            found["walltime"] = slurm_time(str(found["walltime"]))
        except ValueError as exc:
            raise SubmitterError(f"{request.scheduler_config_id}: walltime: {exc}") from None
    found["nodes"] = int(found["nodes"] or 1)
    found["exclusive"] = bool(found["exclusive"])
    return found


def runner_argv(request: NodeRequest, runner_command: Sequence[str]) -> list[str]:
    """The runner's command line; credentials travel in the environment, never here."""
    return [
        *runner_command,
        request.workflow_key,
        "--url",
        request.server_url,
        "--scheduler-config-id",
        request.scheduler_config_id,
        *request.runner_args,
    ]


def context(
    request: NodeRequest,
    *,
    runner_command: Sequence[str],
    script_dir: Path,
    marker: str,
    per_node_runners: bool,
) -> dict[str, Any]:
    """Every variable a template may use (custom templates see the same names)."""
    fields = values(request)
    try:
        extra = extra_options(fields.pop("extra"))
    except ValueError as exc:
        raise SubmitterError(f"{request.scheduler_config_id}: extra: {exc}") from None
    server = safe(request.server_id)
    job_name = f"hpcflow-wf{safe(request.workflow_key)}-c{safe(request.config_key)}-{server}"
    comment = (
        f"hpcflow:server={server},workflow={safe(request.workflow_key)},"
        f"config={safe(request.scheduler_config_id.replace('/', '.'))},"
        f"submission={marker}"
    )
    exports = {
        "HPCFLOW_SCHEDULER_TYPE": "slurm",
        "HPCFLOW_SCHEDULER_CONFIG_ID": shlex.quote(request.scheduler_config_id),
        "HPCFLOW_SCHEDULER_ID": '"${SLURM_JOB_ID}"',
        "PYTHONUNBUFFERED": "1",
    }
    return {
        **fields,
        "extra_options": extra,
        "job_name": job_name,
        "comment": comment,
        "marker": marker,
        "output": str(script_dir / f"{job_name}-%j.out"),
        "exports": exports,
        "runner": runner_argv(request, runner_command),
        "per_node": per_node_runners and fields["nodes"] > 1,
        "workflow_key": request.workflow_key,
        "scheduler_config_id": request.scheduler_config_id,
        "config_key": request.config_key,
        "server_url": request.server_url,
        "server_id": request.server_id,
        "config": dict(request.config),
    }


def render(
    request: NodeRequest,
    *,
    runner_command: Sequence[str],
    script_dir: Path,
    marker: str,
    per_node_runners: bool = True,
    template: str = DEFAULT_TEMPLATE,
    template_dir: str | Path | None = None,
) -> Script:
    """The script for one request; config["template"] (a name or inline text) wins."""
    per_node = request.resources.get("per_node_runners", per_node_runners)
    ctx = context(
        request,
        runner_command=runner_command,
        script_dir=script_dir,
        marker=marker,
        per_node_runners=bool(per_node),
    )
    chosen = request.config.get("template") or template
    search = [template_dir] if template_dir else []
    try:
        text = templates.render("slurm", chosen, ctx, search)
    except templates.TemplateError as exc:
        where = "inline template" if templates.is_inline(chosen) else f"template {chosen!r}"
        raise SubmitterError(
            f"{request.scheduler_config_id}: {where} failed to render: {type(exc).__name__}: {exc}"
        ) from None
    return Script(text, ctx["job_name"], marker, ctx["output"])
