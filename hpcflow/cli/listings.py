"""`hpcflow jobs|events`: list a workflow's jobs and events over HTTP (hpcflow/client.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from hpcflow.cli.output import OUTPUT, URL, connect, emit
from hpcflow.cli.workflows import (
    LIMIT,
    META,
    http_errors,
    page_size,
    size,
    take,
    wf_path,
    when,
)
from hpcflow.engine.states import STATUSES
from hpcflow.units import format_duration


@click.group("jobs")
def jobs_group() -> None:
    """Inspect a workflow's jobs."""


@jobs_group.command("list")
@click.argument("workflow")
@click.option("-s", "--status", type=click.Choice(STATUSES), help="Only jobs in this status.")
@LIMIT
@URL
@OUTPUT
@http_errors
def list_jobs(workflow: str, status: str | None, limit: int | None, url: str, output: str) -> None:
    """List a workflow's jobs in key order."""
    docs = take(
        connect(url).iter_items(f"{wf_path(workflow)}/jobs", page_size(limit), status=status), limit
    )
    emit(
        [job_row(d) for d in docs],
        ["key", "name", "status", "command", "cpus", "memory", "runtime", "priority"],
        output,
        title=f"jobs of workflow {workflow}",
        raw=docs,
    )


def job_row(doc: dict[str, Any]) -> dict[str, Any]:
    """One job's table row: its resource needs from the internal block, readable."""
    internal = doc.get("internal") or {}
    runtime = internal.get("runtime_seconds")
    return {
        "key": doc.get("_key"),
        "name": doc.get("name"),
        "status": doc.get("status"),
        "command": doc.get("command"),
        "cpus": internal.get("num_cpus"),
        "memory": size(internal.get("memory_bytes")),
        "runtime": format_duration(runtime) if runtime is not None else "",
        "priority": doc.get("priority"),
    }


@click.group("events")
def events_group() -> None:
    """Inspect a workflow's events."""


@events_group.command("list")
@click.argument("workflow")
@click.option("--category", help="Only events of this category.")
@click.option(
    "--after",
    type=float,
    metavar="TIMESTAMP_MS",
    help="Only events newer than this (ms since the epoch).",
)
@LIMIT
@URL
@OUTPUT
@http_errors
def list_events(
    workflow: str,
    category: str | None,
    after: float | None,
    limit: int | None,
    url: str,
    output: str,
) -> None:
    """List a workflow's events, oldest first (with --limit: the first N)."""
    api = connect(url)
    path = f"{wf_path(workflow)}/events"
    if after is None:
        docs = take(
            api.iter_items(path, page_size(limit), category=category, sort_by="timestamp"), limit
        )
    else:
        docs = take(
            reversed(
                list(
                    _newer(
                        api.iter_items(
                            path, 1000, category=category, sort_by="timestamp", reverse_sort="true"
                        ),
                        after,
                    )
                )
            ),
            limit,
        )
    shown = (*META, "timestamp", "category", "message")
    rows = [
        {
            "key": d.get("_key"),
            "time": when(d.get("timestamp")),
            "category": d.get("category"),
            "message": d.get("message"),
            "data": {k: v for k, v in d.items() if k not in shown} or None,
        }
        for d in docs
    ]
    emit(
        rows,
        ["key", "time", "category", "message", "data"],
        output,
        title=f"events of workflow {workflow}",
        raw=docs,
    )


def _newer(newest_first: Iterator[dict[str, Any]], after: float) -> Iterator[dict[str, Any]]:
    """Events newer than `after`, stopping at the first older one (no pages past it)."""
    for doc in newest_first:
        if float(doc.get("timestamp") or 0) <= after:
            return
        yield doc
