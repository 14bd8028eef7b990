"""`hpcflow reports`: utilization and results of a workflow, computed by the server.

A thin HTTP client: the server computes the reports (GET /workflows/{key}/reports/...); this
prints them as a table or JSON and, with --plot, draws them into one self-contained HTML file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from hpcflow.cli.output import OUTPUT, URL, connect, emit, fail
from hpcflow.errors import HpcflowError

GIB = 1024**3
RUN_ID = click.option(
    "--run-id",
    type=click.IntRange(min=0),
    help="The run to report (default: the workflow's current run).",
)
UTILIZATION_COLUMNS = (
    "group",
    "jobs",
    "runs",
    "killed",
    "mem_req_gb",
    "mem_p95_gb",
    "mem_max_gb",
    "cpus_req",
    "cpu_p95_pct",
    "runtime_req_s",
    "runtime_p95_s",
    "mem_ratio",
    "runtime_ratio",
    "core_h_wasted",
    "gb_h_wasted",
)
RESULTS_COLUMNS = (
    "job_key",
    "job_name",
    "attempt",
    "status",
    "return_code",
    "runtime_s",
    "peak_mem_gb",
    "hostname",
    "job_status",
)


@click.group("reports")
def reports_group() -> None:
    """Utilization and results reports of a workflow."""


def _get(url: str, path: str, **params: Any) -> Any:
    try:
        return connect(url).get(path, **params)
    except HpcflowError as exc:
        fail(str(exc))


def _gb(value: float | None) -> float | None:
    return None if value is None else value / GIB


def _stat(observed: dict[str, Any], name: str, key: str, scale: float = 1.0) -> float | None:
    spread = observed.get(name)
    return None if not spread else spread[key] / scale


def utilization_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per group."""
    rows = []
    for g in report["groups"]:
        obs, req, ratio = g["observed"], g["requested"], g["ratio"]
        rows.append(
            {
                "group": g["name"] or g["resource_requirements_key"] or "(none)",
                "jobs": g["num_jobs"],
                "runs": g["num_runs"],
                "killed": g["num_killed_memory"] + g["num_killed_runtime"],
                "mem_req_gb": _gb(req["memory_bytes"]),
                "mem_p50_gb": _stat(obs, "memory_bytes", "p50", GIB),
                "mem_p95_gb": _stat(obs, "memory_bytes", "p95", GIB),
                "mem_max_gb": _stat(obs, "memory_bytes", "max", GIB),
                "cpus_req": req["num_cpus"],
                "cpu_p95_pct": _stat(obs, "cpu_percent", "p95"),
                "runtime_req_s": req["runtime_seconds"],
                "runtime_p95_s": _stat(obs, "runtime_seconds", "p95"),
                "mem_ratio": ratio["memory"],
                "runtime_ratio": ratio["runtime"],
                "core_h_wasted": g["core_hours"]["wasted"],
                "gb_h_wasted": g["gb_hours"]["wasted"],
            }
        )
    return rows


@reports_group.command("utilization")
@click.argument("workflow")
@RUN_ID
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a per-job timeline and requested-vs-used bars to this HTML file.",
)
@URL
@OUTPUT
def utilization_cmd(
    workflow: str, run_id: int | None, plot: Path | None, url: str, output: str
) -> None:
    """Per group: requested vs observed (p50, p95, max) and the waste in core- and GB-hours."""
    report = _get(url, f"/workflows/{workflow}/reports/utilization", run_id=run_id)
    totals = report["totals"]
    title = (
        f"workflow {report['workflow_key']} run {report['run_id']}: wasted "
        f"{totals['core_hours']['wasted']:.4g} core-hours, "
        f"{totals['gb_hours']['wasted']:.4g} GB-hours"
    )
    emit(utilization_rows(report), UTILIZATION_COLUMNS, output, title=title, raw=report)
    if plot is not None:
        try:
            items = list(
                connect(url).iter_items(
                    f"/workflows/{workflow}/reports/results", run_id=report["run_id"]
                )
            )
        except HpcflowError as exc:
            fail(str(exc))
        write_plot(plot, report, items)
        if output != "json":
            click.echo(f"wrote {plot}")


@reports_group.command("results")
@click.argument("workflow")
@RUN_ID
@URL
@OUTPUT
def results_cmd(workflow: str, run_id: int | None, url: str, output: str) -> None:
    """Every attempt of every job: status, return code, runtime, peak memory and node."""
    try:
        items = list(
            connect(url).iter_items(f"/workflows/{workflow}/reports/results", run_id=run_id)
        )
    except HpcflowError as exc:
        fail(str(exc))
    rows = [
        {**r, "runtime_s": r["runtime_seconds"], "peak_mem_gb": _gb(r["max_rss"])} for r in items
    ]
    emit(rows, RESULTS_COLUMNS, output, title=f"workflow {workflow} results", raw=items)


def _start(row: dict[str, Any]) -> datetime | None:
    """When an attempt started: its completion time minus its runtime."""
    try:
        end = datetime.fromisoformat(str(row["completion_time"]))
    except ValueError:
        return None
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    return datetime.fromtimestamp(end.timestamp() - row["runtime_seconds"], UTC)


def write_plot(path: Path, report: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """One HTML file: a per-job timeline, then requested-vs-used bars per group."""
    import plotly.graph_objects as go

    timeline = go.Figure()
    for status in sorted({_label(r) for r in items}):
        rows = [r for r in items if _label(r) == status and _start(r) is not None]
        timeline.add_trace(
            go.Bar(
                name=status,
                orientation="h",
                y=[f"{r['job_name'] or r['job_key']}#{r['attempt']}" for r in rows],
                base=[_start(r) for r in rows],
                x=[r["runtime_seconds"] * 1000 for r in rows],
                hovertext=[
                    f"rc {r['return_code']}, peak {(_gb(r['max_rss']) or 0):.3g} GB, "
                    f"{r['hostname'] or ''}"
                    for r in rows
                ],
            )
        )
    timeline.update_layout(
        title="Jobs over time (one bar per attempt)",
        barmode="overlay",
        xaxis={"type": "date"},
        height=300 + 14 * len(items),
    )
    names = [g["name"] or g["resource_requirements_key"] or "(none)" for g in report["groups"]]
    bars = []
    for title, key, obs, scale, unit in (
        ("Memory", "memory_bytes", "memory_bytes", GIB, "GB"),
        ("Runtime", "runtime_seconds", "runtime_seconds", 1.0, "s"),
        ("CPUs", "num_cpus", "cpu_percent", 100.0, "CPUs"),
    ):
        fig = go.Figure(
            [
                go.Bar(
                    name="requested",
                    x=names,
                    y=[(g["requested"][key] or 0) / scale for g in report["groups"]],
                ),
                go.Bar(
                    name="used p95",
                    x=names,
                    y=[_stat(g["observed"], obs, "p95", scale) for g in report["groups"]],
                ),
                go.Bar(
                    name="used max",
                    x=names,
                    y=[_stat(g["observed"], obs, "max", scale) for g in report["groups"]],
                ),
            ]
        )
        fig.update_layout(
            title=f"{title}: requested vs used per group ({unit})", barmode="group", height=380
        )
        bars.append(fig)
    parts = [
        f.to_html(full_html=False, include_plotlyjs=(i == 0))
        for i, f in enumerate([timeline, *bars])
    ]
    head = (
        f"<h1>hpcflow utilization: workflow {report['workflow_key']}, run {report['run_id']}</h1>"
    )
    path.write_text(
        "<html><head><meta charset='utf-8'></head><body>" + head + "".join(parts) + "</body></html>"
    )


def _label(row: dict[str, Any]) -> str:
    code = row["return_code"]
    if code == 0:
        return "ok"
    return {137: "killed: memory", 124: "killed: runtime"}.get(code, f"failed ({code})")
