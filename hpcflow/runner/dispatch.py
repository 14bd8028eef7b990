"""Claiming, launching and finishing jobs: the half of the runner loop that touches jobs.

A job goes: claimed (in `queue`, submitted_pending on this node) -> launched (a process; its
start goes in the next report) -> exited (its completion goes in the next report). One report
at a time (reports.py, sent by the Reporter thread) carries everything gathered since the last
one and a claim for the resources that are free, so a completion comes back with the work it
made ready, and processes keep starting while the server works.

Lookahead: once this runner has seen its jobs run for less than `lookahead_seconds` on average,
its claims also ask for a queue of further jobs, about `lookahead_seconds` of work for its slots
(at most MAX_LOOKAHEAD), each fitting the whole node. A slot that frees up then starts the next
job at once instead of waiting a round trip. The queue is refilled once it has run half down,
so one claim brings many jobs (jobqueue.py keeps what they need summed). Queued jobs are
submitted_pending on this node (visible, counted as its load by the autoscaler, covered by its
lease: a lost node's jobs go back to ready) and are released to ready when the runner stops.
A queued job waits about `lookahead_seconds` at most, so no other runner waits longer than that
for it; jobs that run longer than that are never queued.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hpcflow.client import Client
from hpcflow.errors import Conflict, HpcflowError
from hpcflow.runner import follow
from hpcflow.runner import processes as proc
from hpcflow.runner.finish import MISSING_OUTPUTS_RC, Finisher, result_doc, status_and_code
from hpcflow.runner.jobqueue import JobQueue, need_of
from hpcflow.runner.logs import LogBuffer
from hpcflow.runner.monitor import Monitor
from hpcflow.runner.node import ComputeNode
from hpcflow.runner.options import RunnerOptions, Settings
from hpcflow.runner.remote import Remote, ServerGone
from hpcflow.runner.reports import COALESCE, START_DELAY, Reports
from hpcflow.runner.resources import GIB, Offer, Walltime

log = logging.getLogger(__name__)
LOG_FLUSH_SECONDS = 1.0
STATS_BATCH = 500  # process stats documents per request
MAX_LOOKAHEAD = 256
RUNTIME_WEIGHT = 0.2  # of the newest run in the moving average of run times
OnFinish = Callable[[dict[str, Any], str, int], None]


class Dispatch(Reports):
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
    _stats_since: float
    _seen_ready: int
    queue: JobQueue
    successors: follow.Successors
    follows: set[str]
    stopping: str | None
    mean_runtime: float | None
    peak_running: int

    # ---- resources ---------------------------------------------------------------------------
    def _free(self, *, queued: bool = True) -> tuple[int, int, int]:
        """Free CPUs, GPUs and memory; `queued` also sets aside what queued jobs will use."""
        o, u = self.offer, self.used
        cpus, gpus, memory = (
            o.num_cpus - u["cpus"],
            o.num_gpus - u["gpus"],
            o.memory_bytes - u["memory"],
        )
        if queued:
            q = self.queue
            cpus, gpus, memory = cpus - q.cpus, gpus - q.gpus, memory - q.memory
        return cpus, gpus, memory

    def _parallel_room(self, queued: bool = True) -> int | None:
        if self.opts.max_parallel_jobs is None:
            return None
        taken = len(self.supervisor.running) + (len(self.queue) if queued else 0)
        return self.opts.max_parallel_jobs - taken

    def _queue_target(self) -> int:
        """How many jobs to keep queued: about lookahead_seconds of work for this node's slots."""
        seconds = self.opts.lookahead_seconds
        if not seconds or self.mean_runtime is None or self.mean_runtime >= seconds:
            return 0
        slots = max(1, self.peak_running)
        wanted = min(MAX_LOOKAHEAD, int(seconds * slots / max(self.mean_runtime, 1e-4)))
        room = self._parallel_room()
        if room is not None:
            wanted = min(wanted, max(0, room) + (self.opts.max_parallel_jobs or 0))
        return wanted

    def _lookahead(self) -> int:
        """How many more jobs a claim asks to queue."""
        return max(0, self._queue_target() - len(self.queue))

    def _has_room(self) -> bool:
        """Worth claiming: resources are free, or the queue ran half down."""
        cpus, _gpus, memory = self._free()
        room = self._parallel_room()
        if cpus > 0 and memory > 0 and (room is None or room > 0):
            return True
        # Refilling after every finished job would make one report per job or two; at half
        # the queue, one claim brings many jobs and the server answers far fewer reports.
        target = self._queue_target()
        return target > 0 and len(self.queue) <= target // 2

    def _claim_request(self) -> dict[str, Any]:
        """The claim part of a report: what is free now, plus the lookahead queue."""
        cpus, gpus, memory = self._free()
        room = self._parallel_room()
        resources = {
            "num_cpus": max(0, cpus),
            "memory_gb": max(0, memory) / GIB,
            "num_gpus": max(0, gpus),
            "num_nodes": self.offer.num_nodes,
            "time_limit": self.walltime.claim_limit(time.time()),
            "scheduler_config_id": self.opts.scheduler_config_id,
        }
        claim: dict[str, Any] = {
            "resources": resources,
            "sort_method": self.s.sort_method,
            "limit": None if room is None else max(0, room),
            "lookahead": self._lookahead(),
        }
        if self.opts.follow and (wanted := follow.ASK - len(self.successors)) > 0:
            claim["successors"] = wanted
            claim["held"] = [*self.supervisor.running, *(str(j["_key"]) for j in self.queue)]
            claim["known"] = self.successors.keys()
        return claim

    # ---- launching -----------------------------------------------------------------------------
    def _launch_queued(self) -> None:
        """Start every queued job that fits what the running jobs leave free (first fit)."""
        if not self.queue:
            return
        cpus, gpus, memory = self._free(queued=False)
        for job in self.queue.take_fitting(cpus, gpus, memory, self._parallel_room(queued=False)):
            self._launch(job)
        self.peak_running = max(self.peak_running, len(self.supervisor.running))

    def _launch(self, job: dict[str, Any]) -> proc.Run | None:
        key = str(job["_key"])
        env = proc.job_env(
            self.env,
            workflow_key=self.wf,
            job_key=key,
            run_id=self.run_id,
            compute_node_key=self.node.key,
            url=self.client.url,
            output_dir=self.opts.output_dir,
        )
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
        if not self.to_start:
            self.starts_due = time.monotonic() + START_DELAY
        self.to_start[key] = run
        return run

    def _start_failed(self, job: dict[str, Any], exc: Exception) -> None:
        code = (
            127
            if isinstance(exc, FileNotFoundError)
            else (126 if isinstance(exc, PermissionError) else 1)
        )
        key = str(job["_key"])
        self.finisher.event(
            "start_failed",
            f"job {key} could not start: {exc}",
            job_key=key,
            run_id=self.run_id,
            return_code=code,
        )
        self._complete_later(Pending(key, str(job["_rev"])), self.run_id, "done", code, 0.0)
        self._count(job, "done", code)

    def _take(self, job: dict[str, Any], sign: int) -> None:
        cpus, gpus, memory = need_of(job)
        self.used["cpus"] += sign * cpus
        self.used["gpus"] += sign * gpus
        self.used["memory"] += sign * memory

    def _mark_started(self, run: proc.Run) -> None:
        """Start one job by itself (a batch start of it was refused): fresh rev and run_id."""
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

    def _follow(self, jobs: list[dict[str, Any]]) -> None:
        """Start successors whose blockers all exited 0 here, those that fit what is free now
        (the others become ready on the server and are claimed the usual way)."""
        for job in jobs:
            cpus, gpus, memory = self._free(queued=False)
            need_cpus, need_gpus, need_memory = need_of(job)
            room = self._parallel_room(queued=False)
            runtime = (job.get("internal") or {}).get("runtime_seconds") or 0
            if (
                self.stopping
                or need_cpus > cpus
                or need_gpus > gpus
                or need_memory > memory
                or (room is not None and room <= 0)
                or runtime > self.walltime.time_for_jobs(time.time())
            ):
                continue
            if self._launch(job) is not None:
                self.follows.add(str(job["_key"]))
                self.counts["followed"] += 1

    # ---- finishing ---------------------------------------------------------------------------
    def _finish(self, run: proc.Run) -> None:
        self._take(run.job, -1)
        self.limits.pop(run.key, None)
        tracked = self.monitor.remove(run.key) if self.monitor else None
        if run.stop_reason == proc.ABANDONED:
            self.to_start.pop(run.key, None)
            return
        status, code = status_and_code(run)
        if status == "done" and code == 0 and run.job.get("output_files"):
            missing = self.finisher.outputs(run.job)
            if missing:
                code = MISSING_OUTPUTS_RC
                self.finisher.event(
                    "missing_outputs",
                    f"job {run.key} exited 0 but did not produce {', '.join(missing)}",
                    job_key=run.key,
                    run_id=run.run_id,
                    missing=missing,
                )
        if run.stop_reason in (proc.OUT_OF_MEMORY, proc.TIMEOUT):
            peak = tracked.rss.peak if tracked else None
            self.finisher.event(
                run.stop_reason,
                f"job {run.key} killed: {'; '.join(run.notes)}",
                job_key=run.key,
                run_id=run.run_id,
                return_code=code,
                max_rss=peak,
                internal=run.job.get("internal"),
            )
        self._follow(self.successors.finished(run.key, status == "done" and code == 0))
        seconds = (run.exited_mono or time.perf_counter()) - run.started_mono
        if run.stop_reason is None:
            self.mean_runtime = (
                seconds
                if self.mean_runtime is None
                else ((1 - RUNTIME_WEIGHT) * self.mean_runtime + RUNTIME_WEIGHT * seconds)
            )
        self._complete_later(run, run.run_id, status, code, seconds)
        self._count(run.job, status, code)
        if self.opts.trace and run.exited_mono is not None:
            self.trace.append((run.key, run.started_mono, run.exited_mono))
        if tracked is not None and self.s.process_stats:
            stats = Monitor.process_stats(tracked)
            if stats:
                if not self.deferred:
                    self._stats_since = time.monotonic()
                self.deferred.append(stats)
        if not self.logs.pending:
            self._logs_since = time.monotonic()
        self.logs.add(run, self.node.key)

    def _complete_later(
        self, holder: Any, run_id: int, status: str, code: int, seconds: float
    ) -> None:
        """Queue a completion for the next report (the job's rev is read when it is sent)."""
        if not self.to_complete:
            self.completions_due = time.monotonic() + COALESCE
        self.to_complete[holder_key(holder)] = (
            holder,
            {
                "status": status,
                "result": result_doc(holder_key(holder), run_id, code, status, seconds),
            },
        )

    def _count(self, job: dict[str, Any], status: str, code: int) -> None:
        self.counts["failed" if status == "done" and code != 0 else status] += 1
        if self.on_finish is not None:
            self.on_finish(job, status, code)

    def _flush(self, force: bool = False) -> None:
        """Store deferred stats and logs in batches: when full, a second old, or when idle."""
        now = time.monotonic()
        idle = not self.supervisor.running
        if self.deferred and (
            force
            or idle
            or len(self.deferred) >= STATS_BATCH
            or now - self._stats_since >= LOG_FLUSH_SECONDS
        ):
            items, self.deferred = self.deferred, []
            try:
                self.remote.upload_process_stats(items)
            except ServerGone:
                raise
            except HpcflowError as exc:  # refused documents must not stop the runner
                log.warning("%d process stats not stored: %s", len(items), exc)
        due = now - self._logs_since >= LOG_FLUSH_SECONDS
        if self.logs.pending and (force or self.logs.full or due or idle):
            items = self.logs.take()
            try:
                self.remote.upload_logs(items)
            except ServerGone:
                raise
            except HpcflowError as exc:
                log.warning("%d job logs not stored: %s", len(items), exc)


class Pending:
    """A job that never became a process (it could not start): its key and claimed rev."""

    def __init__(self, key: str, rev: str) -> None:
        self.key = key
        self.rev = rev
        self.stop_reason: str | None = None


def holder_key(holder: Any) -> str:
    """The job key of a Run or a Pending."""
    return str(holder.key)
