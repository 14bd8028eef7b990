"""`hpcflow schedule-nodes` (launch nodes by hand from this machine) and `hpcflow nodes ...`.

schedule-nodes calls the submitter in this process, as on a cluster's login node, and records
each allocation as a scheduled_compute_nodes document through the API.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from hpcflow.cli.output import OUTPUT, URL, connect, emit, fail
from hpcflow.cli.schedulers import KINDS, config_ref, get_config, http_errors, wf_path
from hpcflow.client import Client
from hpcflow.errors import Conflict, HpcflowError, SubmitterError

# Recorded states that a scheduler may still change; ended ones are not asked about again.
OPEN = ("pending", "submitted", "running", "unknown")
ENDED = ("completed", "failed", "canceled", "timeout")
NODE_COLUMNS = [
    "key",
    "scheduler_config_id",
    "scheduler_id",
    "status",
    "live",
    "submitted",
    "output_path",
    "message",
]


def submitter_for(kind: str, output_dir: Path | None) -> Any:
    """A submitter of `kind` whose scripts, logs and launch records go to `output_dir`."""
    from submitters import get_submitter

    options: dict[str, Any] = {}
    if output_dir is not None and kind == "slurm":
        options["script_dir"] = output_dir
    elif output_dir is not None and kind == "local":
        options["output_dir"] = output_dir
    return get_submitter(kind, **options)


def describe(exc: SubmitterError) -> str:
    """The error with the command it ran and the scheduler's own words."""
    parts = [exc.message]
    if exc.command:
        parts.append(f"command: {exc.command}")
    if exc.exit_code is not None:
        parts.append(f"exit code: {exc.exit_code}")
    said = (exc.stderr or "").strip()
    if said and said not in exc.message:
        parts.append(f"stderr: {said}")
    return "\n  ".join(parts)


@click.command("schedule-nodes")
@click.argument("workflow")
@click.option(
    "-s",
    "--scheduler-config-id",
    "config_id",
    required=True,
    help="The config to launch, e.g. slurm_schedulers/3 or local_schedulers/1.",
)
@click.option(
    "-n",
    "--num",
    "num",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many nodes to launch.",
)
@click.option("--server-url", help="URL the runners use to reach the server (default: --url).")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where sbatch scripts or local runner logs go (default: ./hpcflow-<kind>).",
)
@click.option("--walltime", help="Override the config's walltime, e.g. 04:00:00 or P0DT4H.")
@click.option("--idle-timeout", type=float, help="Runners exit after this many idle seconds.")
@click.option(
    "--runner-arg",
    "runner_args",
    multiple=True,
    help="Another flag for `hpcflow runner`, e.g. --runner-arg=--max-parallel-jobs=4.",
)
@click.option(
    "--token",
    envvar="HPCFLOW_TOKEN",
    help="Credentials for the server and the "
    "runners (env HPCFLOW_TOKEN); runners get them in their environment.",
)
@URL
@OUTPUT
@http_errors
def schedule_nodes_cmd(
    workflow: str,
    config_id: str,
    num: int,
    server_url: str | None,
    output_dir: Path | None,
    walltime: str | None,
    idle_timeout: float | None,
    runner_args: tuple[str, ...],
    token: str | None,
    url: str,
    output: str,
) -> None:
    """Launch nodes of one scheduler config for WORKFLOW from this machine, and record them."""
    from submitters.base import NodeRequest

    collection, key = config_ref(config_id)
    api = Client(url, token=token)
    cfg = get_config(api, workflow, collection, key)
    kind = collection.removesuffix("_schedulers")
    try:
        sub = submitter_for(kind, output_dir)
    except Exception as exc:  # a missing optional dependency, e.g. boto3
        fail(f"the {kind} submitter is not available here: {type(exc).__name__}: {exc}")
    flags = ("--idle-timeout", f"{idle_timeout:g}") if idle_timeout is not None else ()
    request = NodeRequest(
        workflow_key=workflow,
        scheduler_config_id=f"{collection}/{cfg['_key']}",
        config=cfg,
        server_url=(server_url or url).rstrip("/"),
        token=token,
        walltime=walltime,
        runner_args=(*flags, *runner_args),
    )
    launched: list[dict[str, Any]] = []
    for _ in range(num):
        try:
            result = sub.submit(request)
        except SubmitterError as exc:
            done = ", ".join(str(d["scheduler_id"]) for d in launched) or "none"
            fail(
                f"launched {len(launched)} of {num} nodes (ids: {done}); then the submit "
                f"failed: {describe(exc)}"
            )
        try:
            launched.append(
                api.post(
                    f"{wf_path(workflow)}/scheduled_compute_nodes",
                    {
                        "scheduler_id": str(result.scheduler_id),
                        "scheduler_config_id": request.scheduler_config_id,
                        "status": "pending",
                        "script": result.script,
                        "output_path": result.output_path,
                        "submitted_at": time.time(),
                    },
                )
            )
        except HpcflowError as exc:
            # An allocation the server does not know about would run unwatched: take it back.
            try:
                sub.cancel([str(result.scheduler_id)])
                undo = "canceled it"
            except SubmitterError as cancel_exc:
                undo = f"could not cancel it either ({cancel_exc.message}); cancel it by hand"
            fail(f"launched {result.scheduler_id} but could not record it ({exc.message}); {undo}")
    rows = [{**d, "key": d["_key"]} for d in launched]
    emit(
        rows,
        ["key", "scheduler_config_id", "scheduler_id", "status", "output_path"],
        output,
        title=f"launched {len(launched)} nodes of {request.scheduler_config_id}",
        raw=launched,
    )


@click.group("nodes")
def nodes_group() -> None:
    """See a workflow's scheduler configs, launched nodes and runners; pause autoscaling."""


def refresh(
    api: Client, workflow: str, docs: list[dict[str, Any]]
) -> tuple[dict[str, str], list[str]]:
    """Ask each config's submitter once about its open nodes; store states that changed.

    Returns the live state by document key and the errors met (a submitter that cannot answer
    leaves its nodes as recorded). 'unknown' is shown but never stored over a known state.
    """
    groups: dict[tuple[str, Path | None], list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        if doc.get("status") in OPEN and doc.get("scheduler_id"):
            kind = str(doc["scheduler_config_id"]).partition("/")[0].removesuffix("_schedulers")
            # Local launch records sit beside the runner logs, wherever they were launched from.
            where = (
                Path(doc["output_path"]).parent
                if kind == "local" and doc.get("output_path")
                else None
            )
            groups[(str(doc["scheduler_config_id"]), where)].append(doc)
    live: dict[str, str] = {}
    errors: list[str] = []
    for (cfg_id, where), members in groups.items():
        kind = cfg_id.partition("/")[0].removesuffix("_schedulers")
        try:
            states = submitter_for(kind, where).status([str(d["scheduler_id"]) for d in members])
        except Exception as exc:  # one scheduler not answering must not hide the others
            errors.append(f"{cfg_id}: status failed: {type(exc).__name__}: {exc}")
            continue
        for doc in members:
            state = str(getattr(states.get(str(doc["scheduler_id"])), "value", "unknown"))
            live[doc["_key"]] = state
            if state == doc["status"] or state == "unknown":
                continue
            body = {k: v for k, v in doc.items() if k != "_id"}
            body.update(
                status=state, message=f"ended: {state}" if state in ENDED else doc.get("message")
            )
            # A Conflict means the autoscaler wrote it meanwhile: its write stands.
            with contextlib.suppress(Conflict):
                doc.update(
                    api.put(f"{wf_path(workflow)}/scheduled_compute_nodes/{doc['_key']}", body)
                )
    return live, errors


def _when(seconds: float | None) -> str:
    return (
        ""
        if seconds is None
        else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(seconds)))
    )


@nodes_group.command("list")
@click.argument("workflow")
@click.option(
    "--refresh/--no-refresh",
    "do_refresh",
    default=True,
    show_default=True,
    help="Ask the schedulers about open nodes (one status call per config).",
)
@click.option("--all", "show_all", is_flag=True, help="Also list runners that have stopped.")
@URL
@OUTPUT
@http_errors
def list_nodes(workflow: str, do_refresh: bool, show_all: bool, url: str, output: str) -> None:
    """List WORKFLOW's scheduler configs (with pause state), launched nodes and runners."""
    api = connect(url)
    base = wf_path(workflow)
    api.get(base)
    configs = [d for kind in KINDS for d in api.iter_items(f"{base}/{kind}_schedulers")]
    docs = list(api.iter_items(f"{base}/scheduled_compute_nodes"))
    live, errors = refresh(api, workflow, docs) if do_refresh else ({}, [])
    runners = list(api.iter_items(f"{base}/compute_nodes", is_active=None if show_all else "true"))
    if output == "json":
        emit(
            [],
            [],
            output,
            raw={
                "configs": configs,
                "scheduled_compute_nodes": [
                    {**d, "live_status": live.get(d["_key"])} for d in docs
                ],
                "compute_nodes": runners,
                "errors": errors,
            },
        )
        return
    emit(
        [
            {
                **c,
                "id": c["_id"],
                "paused": c.get("is_paused"),
                "failures": c.get("consecutive_failures"),
            }
            for c in configs
        ],
        ["id", "name", "max_nodes", "max_queued", "paused", "failures", "last_error"],
        output,
        title="scheduler configs",
    )
    emit(
        [
            {
                **d,
                "key": d["_key"],
                "live": live.get(d["_key"], ""),
                "submitted": _when(d.get("submitted_at")),
            }
            for d in docs
        ],
        NODE_COLUMNS,
        output,
        title="scheduled compute nodes",
    )
    emit(
        [
            {
                **r,
                "key": r["_key"],
                "allocation": (r.get("scheduler") or {}).get("scheduler_id")
                or (r.get("scheduler") or {}).get("job_id"),
                "cpus": (r.get("resources") or {}).get("num_cpus"),
                "memory_gb": (r.get("resources") or {}).get("memory_gb"),
                "heartbeat": _when(r.get("last_heartbeat")),
            }
            for r in runners
        ],
        ["key", "hostname", "pid", "allocation", "is_active", "cpus", "memory_gb", "heartbeat"],
        output,
        title="compute nodes (runners)" if show_all else "active compute nodes (runners)",
    )
    for error in errors:
        click.echo(f"warning: {error}", err=True)


def _pause(workflow: str, config_id: str, url: str, output: str, action: str) -> None:
    collection, key = config_ref(config_id)
    doc = connect(url).post(f"{wf_path(workflow)}/schedulers/{collection}/{key}/{action}")
    if output == "json":
        emit([], [], output, raw=doc)
    elif action == "pause":
        click.echo(
            f"paused {doc['_id']}: the autoscaler launches no nodes of it until "
            f"`hpcflow nodes resume {workflow} {doc['_id']}`"
        )
    else:
        click.echo(f"resumed {doc['_id']}: the autoscaler may launch nodes of it again")


@nodes_group.command("pause")
@click.argument("workflow")
@click.argument("config_id")
@URL
@OUTPUT
@http_errors
def pause_cmd(workflow: str, config_id: str, url: str, output: str) -> None:
    """Stop the autoscaler launching nodes of CONFIG_ID (e.g. slurm_schedulers/3)."""
    _pause(workflow, config_id, url, output, "pause")


@nodes_group.command("resume")
@click.argument("workflow")
@click.argument("config_id")
@URL
@OUTPUT
@http_errors
def resume_cmd(workflow: str, config_id: str, url: str, output: str) -> None:
    """Let the autoscaler launch nodes of CONFIG_ID again (clears its failure count)."""
    _pause(workflow, config_id, url, output, "resume")
