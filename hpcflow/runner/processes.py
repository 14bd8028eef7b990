"""Start each job as its own process (no shell) and learn the moment it exits.

One waiter thread per process blocks in waitpid and posts the finished run to a queue the
runner's loop blocks on, so a completion wakes the loop at once: no polling interval.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Why a run was stopped by the runner (None: it ended on its own).
TERMINATED = "terminated"  # walltime or runner shutdown
CANCELED = "canceled"  # the workflow was canceled
OUT_OF_MEMORY = "out_of_memory"
TIMEOUT = "timeout"
ABANDONED = "abandoned"  # the server refused to start it: killed and not reported


def build_argv(command: str, invocation_script: str | None = None) -> list[str]:
    """The job's argv: its command split like a shell would, wrapped by its invocation script."""
    argv = shlex.split(command)
    if not argv:
        raise ValueError("job command is empty")
    if invocation_script and invocation_script.strip():
        return shlex.split(invocation_script) + argv
    return argv


def job_env(base: Mapping[str, str], *, workflow_key: str, job_key: str, run_id: int,
            compute_node_key: str | None = None, url: str | None = None,
            output_dir: str | Path | None = None) -> dict[str, str]:
    """The environment of a job: the runner's plus torc's and hpcflow's identity variables."""
    env = dict(base)
    env.update({"TORC_WORKFLOW_KEY": workflow_key, "TORC_JOB_KEY": job_key,
                "HPCFLOW_WORKFLOW_KEY": workflow_key, "HPCFLOW_JOB_KEY": job_key,
                "HPCFLOW_RUN_ID": str(run_id)})
    if compute_node_key:
        env["HPCFLOW_COMPUTE_NODE_KEY"] = compute_node_key
    if url:
        env["TORC_SERVICE_URL"] = env["HPCFLOW_URL"] = url
    if output_dir is not None:
        env["HPCFLOW_OUTPUT_DIR"] = str(output_dir)
    return env


def return_code(code: int) -> int:
    """Shell convention for a process killed by a signal: 128 + the signal number."""
    return 128 - code if code < 0 else code


@dataclass(eq=False)
class Run:
    """One running (or finished) process of one job."""

    job: dict[str, Any]
    run_id: int
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    started: float  # wall clock, for results
    started_mono: float  # perf_counter, for latencies
    rev: str = ""
    exited_mono: float | None = None
    stop_reason: str | None = None
    stop_deadline: float | None = None  # monotonic time at which SIGKILL follows SIGTERM
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The job's key."""
        return str(self.job["_key"])

    @property
    def pid(self) -> int:
        """The job's process id (also its process group id)."""
        return self.proc.pid

    def signal(self, sig: int) -> None:
        """Signal the job's whole process group (its children too)."""
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, reason: str, grace: float = 0.0) -> None:
        """SIGTERM now (SIGKILL after `grace` seconds via kill_overdue), or SIGKILL at once."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if grace > 0:
            if self.stop_deadline is None:
                self.stop_deadline = time.monotonic() + grace
                self.signal(signal.SIGTERM)
        else:
            self.signal(signal.SIGKILL)


class Supervisor:
    """Starts job processes, tracks them and reports each exit the moment it happens."""

    def __init__(self, output_dir: str | Path, workflow_key: str) -> None:
        self.output_dir = Path(output_dir)
        self.workflow_key = workflow_key
        self.running: dict[str, Run] = {}
        # SimpleQueue.put is reentrant: signal handlers may wake the loop through it.
        self._exits: queue.SimpleQueue[Run | None] = queue.SimpleQueue()

    def paths(self, job_key: str, run_id: int) -> tuple[Path, Path]:
        """Where one run's stdout and stderr go."""
        stem = self.output_dir / f"wf{self.workflow_key}_job{job_key}_run{run_id}"
        return stem.with_suffix(".o"), stem.with_suffix(".e")

    def start(self, job: dict[str, Any], run_id: int, env: Mapping[str, str],
              cwd: str | Path | None = None) -> Run:
        """Launch one job; raises OSError/ValueError when it cannot start."""
        argv = build_argv(job["command"], job.get("invocation_script"))
        out_path, err_path = self.paths(str(job["_key"]), run_id)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.time()
            # A new session makes the job a process-group leader, so signals reach its children.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=dict(env), cwd=cwd, start_new_session=True)
        run = Run(job=job, run_id=run_id, proc=proc, stdout=out_path, stderr=err_path,
                  started=started, started_mono=time.perf_counter(), rev=str(job.get("_rev", "")))
        self.running[run.key] = run
        threading.Thread(target=self._wait, args=(run,), name=f"wait-{run.key}",
                         daemon=True).start()
        return run

    def _wait(self, run: Run) -> None:
        run.proc.wait()
        run.exited_mono = time.perf_counter()
        self._exits.put(run)

    def pending(self) -> bool:
        """True when an exit (or wake-up) is queued and the loop should not start other work."""
        return not self._exits.empty()

    def wake(self) -> None:
        """Make a blocked wait() return now (safe from signal handlers and other threads)."""
        self._exits.put(None)

    def wait(self, timeout: float | None) -> list[Run]:
        """Block until a process exits (or wake/timeout), then return every exit queued so far."""
        found: list[Run] = []
        try:
            item = self._exits.get(timeout=None if timeout is None else max(0.0, timeout))
        except queue.Empty:
            return found
        while True:
            if item is not None:
                self.running.pop(item.key, None)
                found.append(item)
            try:
                item = self._exits.get_nowait()
            except queue.Empty:
                return found

    def stop_all(self, reason: str, grace: float) -> None:
        """Stop every running job (SIGTERM with a grace period, or SIGKILL)."""
        for run in list(self.running.values()):
            run.stop(reason, grace)

    def kill_overdue(self, now: float | None = None) -> float | None:
        """SIGKILL runs whose grace period is over; returns the next such deadline."""
        now = time.monotonic() if now is None else now
        upcoming = []
        for run in self.running.values():
            if run.stop_deadline is None or run.proc.returncode is not None:
                continue
            if now >= run.stop_deadline:
                run.signal(signal.SIGKILL)
            else:
                upcoming.append(run.stop_deadline)
        return min(upcoming, default=None)
