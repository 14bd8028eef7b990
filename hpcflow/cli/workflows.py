"""`hpcflow workflows`: manage workflows on a server over HTTP (hpcflow/client.py)."""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from hpcflow.cli.output import OUTPUT, URL, connect, emit, fail
from hpcflow.client import Client, ServerUnreachable
from hpcflow.engine.states import INCOMPLETE, STATUSES
from hpcflow.errors import HpcflowError

F = TypeVar("F", bound=Callable[..., Any])
LIMIT = click.option("-n", "--limit", type=click.IntRange(min=1), help="Show at most N.")
META = ("_key", "_id", "_rev")


def http_errors(fn: F) -> F:
    """Turn the client's errors into one `Error: ...` line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ServerUnreachable as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "no answer"
            fail(
                f"cannot reach the hpcflow server at {kwargs.get('url')} ({cause}); is it "
                "running? Set --url or HPCFLOW_URL."
            )
        except HpcflowError as exc:
            fail(exc.message)

    return wrapper  # type: ignore[return-value]


def wf_path(key: str) -> str:
    """The workflow's URL path (the key quoted: it comes from the command line)."""
    return f"/workflows/{quote(key, safe='')}"


def take(items: Iterable[Any], limit: int | None) -> list[Any]:
    """At most `limit` items (all when None), without fetching pages past them."""
    return list(items if limit is None else islice(items, limit))


def page_size(limit: int | None) -> int:
    """Pages no bigger than asked for, so `--limit 5` reads 5 documents, not 10,000."""
    return min(limit or 10_000, 10_000)


def job_counts(api: Client, key: str) -> dict[str, int]:
    """Number of jobs in each status (statuses with no jobs left out), in one request."""
    counts = api.get(f"{wf_path(key)}/job_counts")["counts"]
    return {status: int(counts[status]) for status in STATUSES if counts.get(status)}


def size(num_bytes: int | None) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1."""
    if num_bytes is None:
        return ""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.4g} {unit}"
        value /= 1024
    return f"{value:.4g} TiB"


def when(ms: float | None) -> str:
    """Milliseconds since the epoch as local time."""
    if ms is None:
        return ""
    return (
        datetime.fromtimestamp(ms / 1000).astimezone().isoformat(sep=" ", timespec="milliseconds")
    )


def fields(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A document as field/value rows for a two-column table."""
    return [{"field": k, "value": v} for k, v in doc.items() if k not in ("_id", "_rev")]


def counts_rows(counts: dict[str, int]) -> list[dict[str, Any]]:
    """Status/jobs rows plus a total."""
    return [
        *({"status": s, "jobs": n} for s, n in counts.items()),
        {"status": "total", "jobs": sum(counts.values())},
    ]


def _login() -> str:
    """The login name, or 'hpcflow' where there is none (a container without a passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "hpcflow"


# --- workflows ---------------------------------------------------------------------------------


@click.group("workflows")
def workflows_group() -> None:
    """Create, list, inspect, start, cancel and delete workflows."""


@workflows_group.command("create")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--user", help="Owner (default: the spec's user, else your login name).")
@click.option(
    "--start/--no-start",
    default=False,
    show_default=True,
    help="Initialize the jobs right away so runners can claim them.",
)
@URL
@http_errors
def create_cmd(spec: Path, user: str | None, start: bool, url: str) -> None:
    """Store the workflow in SPEC (JSON, JSON5 or YAML) and print its key."""
    from hpcflow.spec import load_spec

    body = load_spec(spec)
    body["user"] = user or body.get("user") or _login()
    api = connect(url)
    key = str(api.post("/workflow_specifications", body)["_key"])
    if start:
        done = api.post(f"{wf_path(key)}/initialize_jobs")
        click.echo(
            f"started workflow {key}: {done.get('num_ready', 0)} ready, "
            f"{done.get('num_blocked', 0)} blocked",
            err=True,
        )
    click.echo(key)


@workflows_group.command("list")
@click.option("--user", help="Only this user's workflows.")
@click.option("--name", help="Only workflows with this name.")
@click.option(
    "--archived/--not-archived",
    default=None,
    help="Only archived (or only active) workflows; default both.",
)
@LIMIT
@URL
@OUTPUT
@http_errors
def list_workflows(
    user: str | None,
    name: str | None,
    archived: bool | None,
    limit: int | None,
    url: str,
    output: str,
) -> None:
    """List workflows, oldest first."""
    flag = None if archived is None else str(archived).lower()
    docs = take(
        connect(url).iter_items(
            "/workflows", page_size(limit), user=user, name=name, is_archived=flag
        ),
        limit,
    )
    rows = [{**d, "key": d["_key"], "archived": d.get("is_archived")} for d in docs]
    emit(
        rows,
        ["key", "name", "user", "description", "timestamp", "archived"],
        output,
        title="workflows",
        raw=docs,
    )


@workflows_group.command("show")
@click.argument("key")
@URL
@OUTPUT
@http_errors
def show_workflow(key: str, url: str, output: str) -> None:
    """Show a workflow with its config, status and job counts."""
    api = connect(url)
    doc = {
        "workflow": api.get(wf_path(key)),
        "config": api.get(f"{wf_path(key)}/config"),
        "status": api.get(f"{wf_path(key)}/status"),
        "job_counts": job_counts(api, key),
    }
    if output == "json":
        emit([], [], output, raw=doc)
        return
    emit(fields(doc["workflow"]), ["field", "value"], output, title=f"workflow {key}")
    emit(fields(doc["config"]), ["field", "value"], output, title="config")
    emit(fields(doc["status"]), ["field", "value"], output, title="status")
    emit(counts_rows(doc["job_counts"]), ["status", "jobs"], output, title="jobs")


@workflows_group.command("status")
@click.argument("key")
@URL
@OUTPUT
@http_errors
def workflow_status(key: str, url: str, output: str) -> None:
    """Count the workflow's jobs by status and say whether it is complete."""
    api = connect(url)
    status = api.get(f"{wf_path(key)}/status")
    counts = job_counts(api, key)
    # Worked out here rather than by GET is_complete, which consumes the one-shot
    # "run the completion script" signal meant for runners.
    complete = not any(counts.get(s) for s in INCOMPLETE)
    doc = {
        "workflow": key,
        "job_counts": counts,
        "total": sum(counts.values()),
        "is_complete": complete,
        "is_canceled": bool(status.get("is_canceled")),
    }
    if output == "json":
        emit([], [], output, raw=doc)
        return
    emit(counts_rows(counts), ["status", "jobs"], output, title=f"workflow {key}")
    click.echo(
        f"complete: {'yes' if complete else 'no'}; "
        f"canceled: {'yes' if doc['is_canceled'] else 'no'}"
    )


@workflows_group.command("start")
@click.argument("key")
@URL
@http_errors
def start_workflow(key: str, url: str) -> None:
    """Initialize the jobs (blocked or ready) so runners can claim them."""
    done = connect(url).post(f"{wf_path(key)}/initialize_jobs")
    click.echo(
        f"started workflow {key}: {done.get('num_ready', 0)} ready, "
        f"{done.get('num_blocked', 0)} blocked"
    )


@workflows_group.command("cancel")
@click.argument("key")
@URL
@http_errors
def cancel_workflow(key: str, url: str) -> None:
    """Cancel the workflow: unfinished jobs are canceled and runners stop theirs."""
    done = connect(url).put(f"{wf_path(key)}/cancel")
    click.echo(
        f"canceled workflow {key}: {done.get('num_canceled_jobs', 0)} unfinished jobs canceled"
    )


@workflows_group.command("delete")
@click.argument("key")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@URL
@http_errors
def delete_workflow(key: str, yes: bool, url: str) -> None:
    """Delete a workflow and everything it owns."""
    api = connect(url)
    doc = api.get(wf_path(key))
    if not yes:
        click.confirm(
            f"Delete workflow {key} ({doc.get('name') or 'unnamed'}, user "
            f"{doc.get('user')}) and all its jobs?",
            abort=True,
        )
    api.delete(wf_path(key))
    click.echo(f"deleted workflow {key}")


# --- jobs and events ---------------------------------------------------------------------------
