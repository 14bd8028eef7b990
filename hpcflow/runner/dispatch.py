"""Claiming, launching and finishing jobs: the half of the runner loop that touches jobs."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hpcflow.client import Client
from hpcflow.errors import Conflict, HpcflowError
from hpcflow.runner import processes as proc
from hpcflow.runner.finish import MISSING_OUTPUTS_RC, Finisher, status_and_code
from hpcflow.runner.logs import LogBuffer
from hpcflow.runner.monitor import Monitor
from hpcflow.runner.node import ComputeNode
from hpcflow.runner.options import RunnerOptions, Settings
from hpcflow.runner.remote import Remote, ServerGone
from hpcflow.runner.resources import GIB, Offer, Walltime

log = logging.getLogger(__name__)
LOG_FLUSH_SECONDS = 1.0
OnFinish = Callable[[dict[str, Any], str, int], None]


class Dispatch:
    """Mixin of Runner: what it does with jobs. The attributes are set by Runner."""

    client: Client
    wf: str
    offer: Offer
    opts: RunnerOptions
    s: Settings
    env: dict[str, str]
    remote: Remote
    supervisor: proc.Supervisor
    monitor: Monitor | None
    node: ComputeNode
    finisher: Finisher
    walltime: Walltime
    logs: LogBuffer
    run_id: int
    counts: Counter[str]
    trace: list[tuple[str, float, float]]
    used: dict[str, int]
    limits: dict[str, float]
    deferred: list[dict[str, Any]]
    next_status: float
    on_finish: OnFinish | None
    _logs_since: float
    _seen_ready: int

    # ---- claiming and starting -------------------------------------------------------------
    def _free(self) -> tuple[int, int, int]:
        o, u = self.offer, self.used
        return o.num_cpus - u["cpus"], o.num_gpus - u["gpus"], o.memory_bytes - u["memory"]

    def _has_room(self) -> bool:
        cpus, _gpus, memory = self._free()
        parallel = self.opts.max_parallel_jobs
        return cpus > 0 and memory > 0 and (parallel is None
                                            or len(self.supervisor.running) < parallel)

    def _claim(self) -> int:
        cpus, gpus, memory = self._free()
        limit = None
        if self.opts.max_parallel_jobs is not None:
            limit = self.opts.max_parallel_jobs - len(self.supervisor.running)
        resources = {"num_cpus": cpus, "memory_gb": memory / GIB, "num_gpus": gpus,
                     "num_nodes": self.offer.num_nodes,
                     "time_limit": self.walltime.claim_limit(time.time()),
                     "scheduler_config_id": self.opts.scheduler_config_id}
        try:
            answer = self.remote.claim(resources, self.s.sort_method, limit, self.node.key)
        except ServerGone:
            raise
        except HpcflowError as exc:  # e.g. a claim that raced another writer: try again later
            log.warning("claim refused: %s", exc)
            return 0
        jobs = answer.get("jobs") or []
        if jobs:
            self._seen_ready = 0
        if not jobs and "canceled" in (answer.get("reason") or ""):
            self.next_status = 0.0  # look at the workflow status right away
        # Launch everything first: start_job is bookkeeping the jobs need not wait for.
        runs = [run for job in jobs if (run := self._launch(job)) is not None]
        for run in runs:
            self._mark_started(run)
        return len(jobs)

    def _launch(self, job: dict[str, Any]) -> proc.Run | None:
        key = str(job["_key"])
        env = proc.job_env(self.env, workflow_key=self.wf, job_key=key, run_id=self.run_id,
                           compute_node_key=self.node.key, url=self.client.url,
                           output_dir=self.opts.output_dir)
        try:
            run = self.supervisor.start(job, self.run_id, env)
        except (OSError, ValueError) as exc:
            self._start_failed(job, exc)
            return None
        self._take(job, +1)
        need = job.get("internal") or {}
        tolerance = self.s.memory_limit_tolerance
        limit = None if tolerance is None else need.get("memory_bytes", 0) * (1 + tolerance)
        assert self.monitor is not None
        self.monitor.add(run, limit)
        factor = self.s.runtime_limit_factor
        if factor is not None and need.get("runtime_seconds"):
            self.limits[key] = time.monotonic() + need["runtime_seconds"] * factor
        self.counts["started"] += 1
        return run

    def _mark_started(self, run: proc.Run) -> None:
        for _ in range(2):
            try:
                doc = self.remote.start_job(run.key, run.rev, self.run_id, self.node.key)
                run.rev = str(doc["_rev"])
                return
            except Conflict as exc:
                job = self.remote.get_job(run.key)
                self.run_id = int(self.remote.status()["run_id"])
                if job["status"] != "submitted_pending":
                    log.warning("job %s cannot start (%s); killing it", run.key, exc)
                    break
                run.rev = str(job["_rev"])
        run.stop(proc.ABANDONED, 0)

    def _start_failed(self, job: dict[str, Any], exc: Exception) -> None:
        code = 127 if isinstance(exc, FileNotFoundError) else (
            126 if isinstance(exc, PermissionError) else 1)
        key = str(job["_key"])
        self.finisher.event("start_failed", f"job {key} could not start: {exc}", job_key=key,
                            run_id=self.run_id, return_code=code)
        self.finisher.complete(key, str(job["_rev"]), self.run_id, "done", code, 0.0)
        self._count(job, "done", code)

    def _take(self, job: dict[str, Any], sign: int) -> None:
        need = job.get("internal") or {}
        self.used["cpus"] += sign * int(need.get("num_cpus") or 0)
        self.used["gpus"] += sign * int(need.get("num_gpus") or 0)
        self.used["memory"] += sign * int(need.get("memory_bytes") or 0)

    # ---- finishing ---------------------------------------------------------------------------
    def _finish(self, run: proc.Run) -> None:
        self._take(run.job, -1)
        self.limits.pop(run.key, None)
        tracked = self.monitor.remove(run.key) if self.monitor else None
        if run.stop_reason == proc.ABANDONED:
            return
        status, code = status_and_code(run)
        if status == "done" and code == 0 and run.job.get("output_files"):
            missing = self.finisher.outputs(run.job)
            if missing:
                code = MISSING_OUTPUTS_RC
                self.finisher.event("missing_outputs", f"job {run.key} exited 0 but did not "
                                    f"produce {', '.join(missing)}", job_key=run.key,
                                    run_id=run.run_id, missing=missing)
        if run.stop_reason in (proc.OUT_OF_MEMORY, proc.TIMEOUT):
            peak = tracked.rss.peak if tracked else None
            self.finisher.event(run.stop_reason, f"job {run.key} killed: {'; '.join(run.notes)}",
                                job_key=run.key, run_id=run.run_id, return_code=code,
                                max_rss=peak, internal=run.job.get("internal"))
        seconds = (run.exited_mono or time.perf_counter()) - run.started_mono
        try:
            self.finisher.complete(run.key, run.rev, run.run_id, status, code, seconds)
        except ServerGone:
            raise
        except HpcflowError as exc:  # the server refused the result: say so and go on
            log.error("job %s: complete_job refused: %s", run.key, exc)
        self._count(run.job, status, code)
        if self.opts.trace and run.exited_mono is not None:
            self.trace.append((run.key, run.started_mono, run.exited_mono))
        if tracked is not None and self.s.process_stats:
            stats = Monitor.process_stats(tracked)
            if stats:
                self.deferred.append(stats)
        if not self.logs.pending:
            self._logs_since = time.monotonic()
        self.logs.add(run, self.node.key)

    def _count(self, job: dict[str, Any], status: str, code: int) -> None:
        self.counts["failed" if status == "done" and code != 0 else status] += 1
        if self.on_finish is not None:
            self.on_finish(job, status, code)

    def _flush(self, force: bool = False) -> None:
        """Store deferred stats and logs, one request at a time, while no job is waiting."""
        while self.deferred and (force or not self.supervisor.pending()):
            stats = self.deferred.pop(0)
            try:
                self.finisher.process_stats(stats)
            except ServerGone:
                raise
            except HpcflowError as exc:  # a refused document must not stop the runner
                log.warning("job %s: process stats not stored: %s", stats["job_key"], exc)
        due = time.monotonic() - self._logs_since >= LOG_FLUSH_SECONDS
        if self.logs.pending and (force or self.logs.full or due or not self.supervisor.running):
            items = self.logs.take()
            try:
                self.remote.upload_logs(items)
            except ServerGone:
                raise
            except HpcflowError as exc:
                log.warning("%d job logs not stored: %s", len(items), exc)
