"""The runner's main loop: claim what fits, run it, report it the moment it exits.

rq-style: one loop with explicit exits (complete, idle, canceled, walltime, signal, server
gone) and heartbeats between waits. Every wait wakes at once when a local job exits or a reply
arrives. Completions travel in batched reports that also claim (complete_jobs), because
completing a job makes its dependents ready in the same request; the Reporter thread sends
them while the loop keeps starting processes.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from hpcflow.client import Client
from hpcflow.errors import HpcflowError
from hpcflow.runner import processes as proc
from hpcflow.runner.dispatch import LOG_FLUSH_SECONDS, Dispatch, OnFinish
from hpcflow.runner.finish import Finisher
from hpcflow.runner.follow import Successors
from hpcflow.runner.jobqueue import JobQueue
from hpcflow.runner.logs import LogBuffer
from hpcflow.runner.monitor import Monitor
from hpcflow.runner.node import ComputeNode
from hpcflow.runner.options import DEFAULT_RETRY_SECONDS, Outcome, RunnerOptions, resolve
from hpcflow.runner.remote import Remote, ServerGone
from hpcflow.runner.reporter import Reporter
from hpcflow.runner.resources import Offer, Walltime, walltime_end

log = logging.getLogger(__name__)
FIRST_BACKOFF = 0.005
LONG_POLL_SECONDS = 10.0
SWITCH_INTERVAL = 0.0005
STOP_KINDS = {"signal": proc.TERMINATED, "walltime": proc.TERMINATED, "canceled": proc.CANCELED}


class Runner(Dispatch):
    """Runs the jobs of one workflow on this node until there is nothing left to do."""

    def __init__(
        self,
        client: Client,
        workflow_key: str | int,
        offer: Offer,
        options: RunnerOptions | None = None,
        *,
        env: Mapping[str, str] | None = None,
        on_finish: OnFinish | None = None,
    ) -> None:
        self.client = client
        self.wf = str(workflow_key)
        self.offer = offer
        self.opts = options or RunnerOptions()
        self.env = dict(os.environ if env is None else env)
        self.on_finish = on_finish
        if urlsplit(client.url).hostname in ("127.0.0.1", "localhost", "::1"):
            # Proxy lookups from the environment cost ~0.5 ms a request and never apply here.
            client.http.trust_env = False
        self.remote = Remote(
            client,
            self.wf,
            should_abort=lambda: self._signal is not None,
            retry_seconds=self.opts.server_retry_seconds or DEFAULT_RETRY_SECONDS,
        )
        self.supervisor = proc.Supervisor(self.opts.output_dir, self.wf)
        self.counts: Counter[str] = Counter()
        self.trace: list[tuple[str, float, float]] = []
        self.used = {"cpus": 0, "gpus": 0, "memory": 0}
        self.limits: dict[str, float] = {}  # job key -> monotonic runtime-limit deadline
        self.deferred: list[dict[str, Any]] = []  # process stats to store when idle
        self.stopping: str | None = None
        self._signal: str | None = None
        self.monitor: Monitor | None = None
        self._long_poll = True
        self._seen_ready = 0  # claimable jobs the last long poll saw (none fit us)
        self.queue = JobQueue()  # claimed, not started (lookahead)
        self.successors = Successors()  # blocked jobs to start as their blockers exit here
        self.follows: set[str] = set()  # started as successors; not yet confirmed
        self.mean_runtime: float | None = None  # moving average of this node's run times
        self.peak_running = 0
        self.to_start: dict[str, proc.Run] = {}
        self.to_complete: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.to_release: dict[str, str] = {}
        self.starts_due = 0.0
        self.completions_due = 0.0
        self.sent_start: dict[str, proc.Run] = {}
        self.sent_complete: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.reporter: Reporter = None  # type: ignore[assignment]  # set up in _setup

    def request_stop(self, reason: str = "signal") -> None:
        """Orderly stop (what SIGTERM does); safe from signal handlers and other threads."""
        self._signal = reason
        self.supervisor.wake()

    # ---- lifecycle -------------------------------------------------------------------------
    def run(self) -> Outcome:
        """Register, run jobs until an exit condition, then clean up; returns why it stopped."""
        previous = self._install_signals()
        # The reporter thread must not hold the GIL for long while the loop starts processes:
        # a short switch interval keeps each fork and exit notice from waiting behind it.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL))
        try:
            try:
                self._setup()
                outcome = self._loop()
            except ServerGone as exc:
                outcome = self._abandon(exc)
            except BaseException:
                self.supervisor.stop_all(proc.TERMINATED, 0)  # never leave orphans behind
                raise
            self._shutdown(outcome)
        finally:
            sys.setswitchinterval(switch)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.monitor is not None:
                self.monitor.stop()
            if self.reporter is not None:
                self.reporter.stop()
            self.supervisor.close()
        outcome.counts = dict(self.counts)
        return outcome

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: self.request_stop("signal"))
        return previous

    def _setup(self) -> None:
        self.config = self.remote.config()
        self.s = resolve(self.opts, self.config)
        self._script("worker_startup_script")
        self.remote.retry_seconds = self.s.retry_seconds
        self.run_id = int(self.remote.status()["run_id"])
        self.walltime = Walltime(
            walltime_end(self.opts.time_limit, self.env, time.time()), self.s.walltime_buffer
        )
        self.node = ComputeNode(
            self.remote,
            self.offer,
            time_limit=self.walltime.claim_limit(time.time()),
            scheduler_config_id=self.opts.scheduler_config_id,
            env=self.env,
        )
        self.node.register()
        self.finisher = Finisher(self.remote, self.node.key)
        # A server without batch operations gets the reports as single-job calls.
        self.reporter = Reporter(
            self.remote, self.supervisor, batch=self.remote.has_batch(self.run_id, self.node.key)
        )
        self.logs = LogBuffer(self.opts.log_tail_bytes)
        self._logs_since = self._stats_since = time.monotonic()
        self.monitor = Monitor(self.s.stats_interval, node_stats=self.opts.node_stats)
        self.monitor.start()
        now = time.monotonic()
        self.next_heartbeat = now + self.opts.heartbeat_interval
        self.next_status = now + self.opts.status_interval

    def _shutdown(self, outcome: Outcome) -> None:
        if outcome.reason == "server_gone" or not hasattr(self, "node") or not self.node.doc:
            return
        try:
            self._drain()
            self._flush(force=True)
            doc = self.monitor.node_stats_doc(self.node.body["hostname"]) if self.monitor else None
            if doc:
                stored = self.remote.add("compute_node_stats", doc)
                self.finisher.link("node_used", self.node.id, str(stored["_id"]))
            self.node.heartbeat(active=False)
        except HpcflowError as exc:
            outcome.message += f"; could not report the node's end: {exc}"

    def _abandon(self, exc: ServerGone) -> Outcome:
        """The server is gone: kill our jobs (nobody can record them) and say why."""
        self.supervisor.stop_all(proc.TERMINATED, 0)
        self.queue.clear()
        for _ in range(60):  # SIGKILLed processes exit at once unless stuck in the kernel
            if not self.supervisor.running:
                break
            self.supervisor.wait(1.0)
        log.error("%s; stopped all jobs", exc)
        return Outcome("server_gone", f"{exc}; stopped all jobs and exited")

    # ---- the loop --------------------------------------------------------------------------
    def _loop(self) -> Outcome:
        backoff, next_claim, idle_since = 0.0, 0.0, None
        exited: list[proc.Run] = []
        while True:
            for run in exited:
                self._finish(run)
            claimed = None
            reply = self.reporter.take()
            if reply is not None:
                claimed = self._handle(reply)
            now = time.monotonic()
            if claimed is not None:
                if self._has_room():
                    # The server had no more that fits: ask again later (completions still
                    # claim at once; an idle runner parks in the long poll instead).
                    backoff = min(max(backoff * 2, FIRST_BACKOFF), self.opts.poll_interval)
                    next_claim = now + backoff
                else:
                    backoff, next_claim = 0.0, 0.0
            exited = []
            self._enforce_runtime(now)
            if self.stopping is None and (kind := self._stop_kind(now)):
                self.stopping = kind
                self._stop_runs(STOP_KINDS.get(kind, proc.TERMINATED))
            if self.stopping:
                self._release_queue()
                self.successors.clear()
            else:
                self._launch_queued()
            if now >= self.next_heartbeat:
                self.next_heartbeat = now + self.opts.heartbeat_interval
                self._heartbeat()
            if not self.reporter.busy:
                due = self._due(now)
                # A report with completions always claims: they may have made work ready.
                claim = (
                    not self.stopping
                    and self._has_room()
                    and (now >= next_claim or (due and bool(self.to_complete)))
                )
                if claim or due:
                    self._report(claim=claim)
            if self.stopping:
                if not (self.supervisor.running or self.reporter.busy or self._pending()):
                    return Outcome(self.stopping, f"stopped: {self.stopping}")
                kill_at = self.supervisor.kill_overdue()
                wait = min(self.next_heartbeat, kill_at or math.inf) - now
                exited = self.supervisor.wait(max(0.0, wait))
                continue
            if (
                self.supervisor.running
                or self.queue
                or self._pending()
                or claimed
                or self.sent_start
                or self.sent_complete
            ):
                idle_since = None
            else:
                idle_since = idle_since or now
                # Nothing runs, nothing is queued or unreported; decide with the last claim's
                # answer in hand (a claim in flight may still bring jobs).
                if not self.reporter.busy:
                    if claimed == 0 and (done := self._finished_workflow()):
                        return done
                    if now - idle_since >= self.s.idle_timeout:
                        return Outcome("idle", f"no jobs for {self.s.idle_timeout:.0f} s")
                    if claimed == 0 and self._park(now, idle_since + self.s.idle_timeout):
                        next_claim = 0.0
                        continue
            self._flush()
            exited = self.supervisor.wait(self._timeout(now, next_claim))

    def _park(self, now: float, idle_end: float) -> bool:
        """Nothing runs here and nothing fits: long-poll the server until claimable jobs change.

        Returns False when the server has no wait_for_ready (then the loop polls with backoff).
        """
        if not self._long_poll:
            return False
        self._flush(force=True)
        timeout = min(self._timeout(now, math.inf), idle_end - now, LONG_POLL_SECONDS)
        if timeout < 0.05:
            return False
        state = self.remote.wait_for_ready(timeout, self._seen_ready)
        if state is None:
            self._long_poll = False
            return False
        self._seen_ready = int(state.get("num_ready") or 0)
        if state.get("is_canceled"):
            self.next_status = 0.0
        return True

    def _heartbeat(self) -> None:
        try:
            self.node.heartbeat()
        except ServerGone:
            raise
        except HpcflowError as exc:  # a lost heartbeat must not kill the jobs
            log.warning("heartbeat refused: %s", exc)

    def _timeout(self, now: float, next_claim: float) -> float:
        """Seconds until the next thing the loop must do without a process exiting."""
        times = [self.next_heartbeat, self.next_status, *self.limits.values()]
        if not self.reporter.busy and self._has_room():
            times.append(next_claim)
        if not self.reporter.busy and (due := self._next_due()) is not None:
            times.append(due)
        if self.logs.pending:
            times.append(self._logs_since + LOG_FLUSH_SECONDS)
        if self.deferred:
            times.append(self._stats_since + LOG_FLUSH_SECONDS)
        wall = self.walltime.stop_at - time.time()
        return max(0.0, min(min(times) - now, wall))

    def _stop_kind(self, now: float) -> str | None:
        if self._signal:
            return self._signal
        if self.walltime.expired(time.time()):
            return "walltime"
        if now >= self.next_status:
            self.next_status = now + self.opts.status_interval
            status = self.remote.status()
            if status.get("is_canceled"):
                return "canceled"
        return None

    def _stop_runs(self, reason: str) -> None:
        for run in list(self.supervisor.running.values()):
            grace = self.opts.termination_grace if run.job.get("supports_termination") else 0
            run.stop(reason, grace)

    def _finished_workflow(self) -> Outcome | None:
        state = self.remote.is_complete()
        if state.get("needs_to_run_completion_script"):
            self._script("workflow_completion_script")
        if state.get("is_canceled"):
            return Outcome("canceled", "the workflow was canceled")
        if state.get("is_complete") and not self.s.ignore_completion:
            return Outcome("complete", "the workflow is complete")
        return None

    def _script(self, name: str) -> None:
        """Run a config script (torc's worker startup / workflow completion), no shell."""
        command = self.config.get(name)
        if not command:
            return
        try:
            code = subprocess.call(shlex.split(command), env=self.env)
        except (OSError, ValueError) as exc:
            log.error("%s %r could not run: %s", name, command, exc)
            return
        (log.info if code == 0 else log.error)("%s %r exited %d", name, command, code)

    def _enforce_runtime(self, now: float) -> None:
        for key, deadline in list(self.limits.items()):
            run = self.supervisor.running.get(key)
            if run is not None and now >= deadline:
                run.notes.append("runtime limit reached")
                run.stop(proc.TIMEOUT, 0)
                del self.limits[key]
