"""`hpcflow run SPEC`: an embedded server whose autoscaler launches local runners, live progress,
a summary table. Job output goes to <run-dir>/nodes/local/jobs, runner logs beside it.

The server runs as a subprocess with the autoscaler on (a short interval) and a
local_schedulers config sized to this machine (or to --num-cpus/--memory) unless the spec has
one, so runners are started by the autoscaler through the local submitter, exactly as
`hpcflow serve` would start them. This process only watches: it polls job counts for the
progress bar, waits for the runners to finish, and prints one row per job.
"""

from __future__ import annotations

import os
import socket
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
from hpcflow.errors import HpcflowError
from hpcflow.runner.embedded import EmbeddedServer
from hpcflow.runner.options import Outcome
from hpcflow.spec import load_spec

MIB = 1024**2
FINISHED = ("done", "canceled", "terminated")
PAUSE_CHECK_SECONDS = 2.0
# Progress polls at most twice a second, whatever the autoscaler's interval: each poll delays
# the runners' reports (a chain of `true` jobs: link p50 3.3-4.2 ms at five polls a second,
# 2.6-2.9 ms at two).
WATCH_SECONDS = 0.5
COLLECTIONS = ("local_schedulers", "slurm_schedulers", "aws_schedulers")


@dataclass
class RunReport:
    """What `hpcflow run` did: how it ended and one row per job."""

    workflow_key: str
    outcome: Outcome
    rows: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path = Path()

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Jobs that did not finish with return code 0 (disabled jobs are fine)."""
        return [
            r
            for r in self.rows
            if r["status"] != "disabled" and (r["status"] != "done" or r["return_code"] != 0)
        ]

    @property
    def exit_code(self) -> int:
        """0 when every job succeeded and the workflow completed, else 1."""
        return 0 if self.outcome.reason == "complete" and not self.failed else 1


@dataclass
class LocalRun:
    """How `hpcflow run` runs: runner flags (for the launched runners) and the machine's size."""

    runner_env: dict[str, str] = field(default_factory=dict)
    num_cpus: int | None = None
    memory: str | None = None
    idle_timeout: float | None = None  # the workflow's compute_node_wait_for_new_jobs_seconds
    interval: float = 0.25  # autoscaler ticks and progress polls, seconds
    stall_seconds: float = 60.0  # give up when nothing runs or finishes for this long
    max_rows: int = 1000  # larger workflows list only the jobs that did not succeed


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
        rows.append(
            {
                "key": key,
                "name": job.get("name") or key,
                "status": job["status"],
                "return_code": res["return_code"] if res else None,
                "runtime_s": res["exec_time_minutes"] * 60 if res else None,
                "peak_mib": peaks[key] / MIB if key in peaks else None,
            }
        )
    return rows


def table(rows: list[dict[str, Any]], max_rows: int = 1000) -> Table:
    """The summary as a rich table; past max_rows only the jobs that did not succeed."""
    shown = rows
    title = "jobs"
    if len(rows) > max_rows:
        shown = [
            r
            for r in rows
            if r["status"] != "disabled" and (r["status"] != "done" or r["return_code"] != 0)
        ][:max_rows]
        title = f"jobs that did not succeed ({len(shown)} shown of {len(rows)} jobs)"
    out = Table(title=title)
    for name in ("job", "key", "status", "return code", "runtime (s)", "peak memory (MiB)"):
        out.add_column(name, justify="left" if name in ("job", "status") else "right")
    for r in shown:
        out.add_row(
            r["name"],
            r["key"],
            r["status"],
            "" if r["return_code"] is None else str(r["return_code"]),
            "" if r["runtime_s"] is None else f"{r['runtime_s']:.2f}",
            "" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}",
        )
    return out


def create_workflow(api: Client, spec: dict[str, Any]) -> str:
    """Store the spec as a workflow (POST /workflow_specifications) and initialize its jobs."""
    spec = {"user": "hpcflow", **spec}
    wf = str(api.post("/workflow_specifications", spec)["_key"])
    api.post(f"/workflows/{wf}/initialize_jobs")
    return wf


def ensure_local_scheduler(api: Client, wf: str, how: LocalRun) -> None:
    """A local_schedulers config for this machine, unless the workflow has one already."""
    if how.idle_timeout is not None:
        config = api.get(f"/workflows/{wf}/config")
        api.put(
            f"/workflows/{wf}/config",
            {
                **{k: v for k, v in config.items() if k not in ("_key", "_id")},
                "compute_node_wait_for_new_jobs_seconds": how.idle_timeout,
            },
        )
    if api.get(f"/workflows/{wf}/local_schedulers", limit=1)["total_count"]:
        return
    body: dict[str, Any] = {
        "name": "hpcflow-run",
        "max_nodes": 1,
        "max_queued": 1,
        "num_cpus": how.num_cpus or os.cpu_count() or 1,
    }
    if how.memory:
        body["memory"] = how.memory
    api.post(f"/workflows/{wf}/local_schedulers", body)


def default_run_dir(spec: dict[str, Any]) -> Path:
    """./hpcflow-runs/<name>-<timestamp>: the database, runner logs and job output of one run."""
    name = str(spec.get("name") or "workflow").replace("/", "_")
    return Path.cwd() / "hpcflow-runs" / f"{name}-{datetime.now():%Y%m%d-%H%M%S-%f}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the launched runners need the URL before the server binds)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run_spec(
    spec_path: str | Path,
    *,
    run_dir: str | Path | None = None,
    how: LocalRun | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> RunReport:
    """Create the workflow on an embedded, autoscaling server; watch it run; summarize it."""
    console = console or Console()
    how = how or LocalRun()
    spec = load_spec(spec_path)
    folder = Path(run_dir) if run_dir else default_run_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(how.runner_env)
    port = free_port()
    settings = {
        "autoscale_enabled": True,
        "autoscale_interval_seconds": how.interval,
        "node_dir": str(folder / "nodes"),
        "public_url": f"http://127.0.0.1:{port}",
        "heartbeat_interval_seconds": 5.0,
        "log_level": "WARNING",
    }
    with EmbeddedServer(
        f"sqlite:///{folder / 'hpcflow.db'}", mode="gunicorn", port=port, settings=settings, env=env
    ) as server:
        api = Client(server.url)
        api.http.trust_env = False
        wf = create_workflow(api, spec)
        ensure_local_scheduler(api, wf, how)
        try:
            outcome = Watcher(api, wf, how, console, progress).watch()
        except KeyboardInterrupt:
            outcome = Outcome("interrupted", "stopped by the user; the workflow was canceled")
            Watcher(api, wf, how, console, False).cancel()
        finally:
            stop_leftovers(api, wf, folder / "nodes")
        rows = summarize(api, wf)
        api.http.close()  # an open keep-alive connection holds gunicorn's graceful stop
    report = RunReport(wf, outcome, rows, folder)
    console.print(table(rows, how.max_rows))
    counts = Counter(r["status"] for r in rows)
    console.print(
        f"workflow {wf}: {outcome.reason} ({outcome.message}); "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; {len(report.failed)} not successful; run folder {folder}",
        soft_wrap=True,
    )
    return report


def stop_leftovers(api: Client, wf: str, node_dir: Path) -> None:
    """Stop runners still alive when `hpcflow run` ends (only after a failure or Ctrl-C)."""
    from submitters.local import LocalSubmitter

    try:
        ids = [
            str(a["scheduler_id"])
            for a in api.iter_items(f"/workflows/{wf}/scheduled_compute_nodes")
            if a["status"] not in ("completed", "failed", "canceled", "timeout")
            and a.get("scheduler_id")
        ]
    except HpcflowError:
        return
    if ids:
        LocalSubmitter(output_dir=node_dir / "local", grace=5.0).cancel(ids)


class Watcher:
    """Polls one workflow for the progress bar until it is complete and its runners are gone."""

    def __init__(self, api: Client, wf: str, how: LocalRun, console: Console, show: bool) -> None:
        self.api = api
        self.base = f"/workflows/{wf}"
        self.how = how
        self.console = console
        self.show = show

    def counts(self) -> dict[str, int]:
        """Jobs in each status, in one request (the watcher must not load the server)."""
        return dict(self.api.get(f"{self.base}/job_counts")["counts"])

    def active_runners(self) -> int:
        """Runners that registered and have not said they stopped."""
        return sum(1 for n in self.api.iter_items(f"{self.base}/compute_nodes") if n["is_active"])

    def open_allocations(self) -> int:
        """Runners the autoscaler launched that have not ended."""
        return sum(
            1
            for a in self.api.iter_items(f"{self.base}/scheduled_compute_nodes")
            if a["status"] not in ("completed", "failed", "canceled", "timeout")
        )

    def paused(self) -> str | None:
        """Why a scheduler config was paused after failed launches, if one was."""
        for coll in COLLECTIONS:
            for cfg in self.api.iter_items(f"{self.base}/{coll}"):
                if cfg.get("is_paused"):
                    return f"{coll}/{cfg['_key']} paused: {cfg.get('last_error')}"
        return None

    def watch(self) -> Outcome:
        """Until complete (and the runners exit) or stalled; the bar shows finished jobs."""
        total = int(self.api.get(f"{self.base}/jobs", limit=0)["total_count"])
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.1f} jobs/s"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.show,
            transient=True,
        )
        started = last_change = time.monotonic()
        last, next_pause_check = -1, 0.0
        with bar:
            task = bar.add_task("starting runners", total=total, rate=0.0)
            while True:
                every = self.counts()
                counts = {s: every.get(s, 0) for s in (*FINISHED, "disabled")}
                finished = sum(counts[s] for s in FINISHED)
                now = time.monotonic()
                text = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "running"
                bar.update(
                    task,
                    completed=finished,
                    description=text,
                    rate=finished / max(1e-9, now - started),
                )
                if finished + counts["disabled"] >= total:
                    return self._finish(total)
                if finished != last:
                    last, last_change = finished, now
                elif now - last_change > self.how.stall_seconds and not self.active_runners():
                    return self._stalled()
                if now >= next_pause_check:  # three listings: not on every poll
                    next_pause_check = now + PAUSE_CHECK_SECONDS
                    if (why := self.paused()) and not self.active_runners():
                        self.cancel()
                        return Outcome("failed", why)
                time.sleep(max(self.how.interval, WATCH_SECONDS))

    def _finish(self, total: int) -> Outcome:
        """Complete: wait for the runners to store their last logs and stats and exit."""
        deadline = time.monotonic() + 60
        while (self.active_runners() or self.open_allocations()) and time.monotonic() < deadline:
            time.sleep(self.how.interval)
        return Outcome("complete", f"all {total} jobs finished")

    def _stalled(self) -> Outcome:
        ready = self.counts().get("ready", 0)
        self.cancel()
        return Outcome(
            "stalled",
            f"nothing ran or finished for {self.how.stall_seconds:.0f} s "
            f"with no runner active ({ready} jobs ready: do they fit this machine?)",
        )

    def cancel(self) -> None:
        """Cancel the workflow (its runners stop their jobs) and wait a little for them."""
        try:
            self.api.put(f"{self.base}/cancel")
        except HpcflowError:
            return
        deadline = time.monotonic() + 30
        while self.active_runners() and time.monotonic() < deadline:
            time.sleep(self.how.interval)
