"""Printing listings: a rich table for people, or JSON with `--output json` for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from hpcflow.client import Client


def connect(url: str, token: str | None = None) -> Client:
    """An HTTP client for the server; the token defaults to `hpcflow --token` (HPCFLOW_TOKEN)."""
    if token is None:
        ctx = click.get_current_context(silent=True)
        token = (ctx.find_root().params.get("token") if ctx else None) or None
    return Client(url, token=token)


URL = click.option(
    "--url",
    envvar="HPCFLOW_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Server base URL (env HPCFLOW_URL).",
)
OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Print a table or JSON.",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    output: str,
    *,
    title: str | None = None,
    raw: Any = None,
) -> None:
    """Print rows as a table of `columns`, or `raw` (default: the rows) as JSON."""
    if output == "json":
        click.echo(json.dumps(rows if raw is None else raw, indent=2, default=str))
        return
    table = Table(title=title)
    for name in columns:
        table.add_column(name)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console(soft_wrap=True).print(table)


def fail(message: str) -> NoReturn:
    """Raise a click error with a readable message (exit code 1)."""
    raise click.ClickException(message)
