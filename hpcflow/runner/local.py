"""`hpcflow run SPEC`: an embedded server, one workflow, a local runner, a summary table."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from hpcflow.runner.loop import Runner
from hpcflow.runner.options import Outcome, RunnerOptions
from hpcflow.runner.resources import Offer, detect
from hpcflow.spec import load_spec

MIB = 1024**2


@dataclass
class RunReport:
    """What `hpcflow run` did: the runner's outcome and one row per job."""

    workflow_key: str
    outcome: Outcome
    rows: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path = Path()

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Jobs that did not finish with return code 0 (disabled jobs are fine)."""
        return [r for r in self.rows if r["status"] != "disabled"
                and (r["status"] != "done" or r["return_code"] != 0)]

    @property
    def exit_code(self) -> int:
        """0 when every job succeeded and the workflow completed, else 1."""
        return 0 if self.outcome.reason == "complete" and not self.failed else 1


def summarize(api: Client, wf: str) -> list[dict[str, Any]]:
    """Per job: status, return code and runtime of its latest run, peak memory."""
    base = f"/workflows/{wf}"
    results: dict[str, dict[str, Any]] = {}
    for r in api.iter_items(f"{base}/results"):
        if r["job_key"] not in results or r["run_id"] >= results[r["job_key"]]["run_id"]:
            results[r["job_key"]] = r
    peaks: dict[str, float] = {}
    for s in api.iter_items(f"{base}/job_process_stats"):
        peaks[s["job_key"]] = max(peaks.get(s["job_key"], 0.0), s["max_rss"])
    rows = []
    for job in api.iter_items(f"{base}/jobs"):
        key = str(job["_key"])
        res = results.get(key)
        rows.append({"key": key, "name": job.get("name") or key, "status": job["status"],
                     "return_code": res["return_code"] if res else None,
                     "runtime_s": res["exec_time_minutes"] * 60 if res else None,
                     "peak_mib": peaks[key] / MIB if key in peaks else None})
    return rows


def table(rows: list[dict[str, Any]]) -> Table:
    """The summary as a rich table."""
    out = Table(title="jobs")
    for name in ("job", "key", "status", "return code", "runtime (s)", "peak memory (MiB)"):
        out.add_column(name, justify="left" if name in ("job", "status") else "right")
    for r in rows:
        out.add_row(r["name"], r["key"], r["status"], "" if r["return_code"] is None
                    else str(r["return_code"]),
                    "" if r["runtime_s"] is None else f"{r['runtime_s']:.2f}",
                    "" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}")
    return out


def create_workflow(api: Client, spec: dict[str, Any]) -> str:
    """Store the spec as a workflow (POST /workflow_specifications) and initialize its jobs."""
    spec = {"user": "hpcflow", **spec}
    wf = str(api.post("/workflow_specifications", spec)["_key"])
    api.post(f"/workflows/{wf}/initialize_jobs")
    return wf


def default_run_dir(spec: dict[str, Any]) -> Path:
    """./hpcflow-runs/<name>-<timestamp>: the database and job logs of one run."""
    name = str(spec.get("name") or "workflow").replace("/", "_")
    return Path.cwd() / "hpcflow-runs" / f"{name}-{datetime.now():%Y%m%d-%H%M%S-%f}"


def run_spec(spec_path: str | Path, *, run_dir: str | Path | None = None,
             options: RunnerOptions | None = None, offer: Offer | None = None,
             server_mode: str = "process", console: Console | None = None,
             progress: bool = True) -> RunReport:
    """Create the workflow from the spec on an embedded server, run it here, summarize it."""
    console = console or Console()
    spec = load_spec(spec_path)
    folder = Path(run_dir) if run_dir else default_run_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    opts = options or RunnerOptions()
    if opts.output_dir == RunnerOptions().output_dir:
        opts.output_dir = folder / "job-output"
    with EmbeddedServer(f"sqlite:///{folder / 'hpcflow.db'}", mode=server_mode) as server:
        api = Client(server.url)
        wf = create_workflow(api, spec)
        total = int(api.get(f"/workflows/{wf}/jobs", limit=0)["total_count"])
        outcome = _run_with_progress(api, wf, offer or detect(), opts, total, console,
                                     progress)
        rows = summarize(api, wf)
    report = RunReport(wf, outcome, rows, folder)
    console.print(table(rows))
    counts = Counter(r["status"] for r in rows)
    console.print(f"workflow {wf}: {outcome.reason} ({outcome.message}); "
                  + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                  + f"; {len(report.failed)} not successful; run folder {folder}",
                  soft_wrap=True)
    return report


def _run_with_progress(api: Client, wf: str, offer: Offer, opts: RunnerOptions, total: int,
                       console: Console, show: bool) -> Outcome:
    counts: Counter[str] = Counter()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:.1f} jobs/s"), TimeRemainingColumn(),
                   console=console, disable=not show, transient=True)
    started = time.monotonic()
    with bar:
        task = bar.add_task("starting", total=total, rate=0.0)

        def on_finish(_job: dict[str, Any], status: str, code: int) -> None:
            counts["failed" if status == "done" and code else status] += 1
            finished = sum(counts.values())
            text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            bar.update(task, completed=finished, description=text,
                       rate=finished / max(1e-9, time.monotonic() - started))

        runner = Runner(api, wf, offer, opts, on_finish=on_finish)
        return runner.run()
