"""Start each job as its own process (no shell) and learn the moment it exits.

The runner's loop blocks in one select over a pidfd per process (Linux) and a wake-up pipe, so
an exit wakes it at once: no polling interval and no thread per job. Without pidfds a waiter
thread per process blocks in waitpid and writes to the same pipe.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcflow.runner.outputs import OutputFiles

# Why a run was stopped by the runner (None: it ended on its own).
TERMINATED = "terminated"  # walltime or runner shutdown
CANCELED = "canceled"  # the workflow was canceled
OUT_OF_MEMORY = "out_of_memory"
TIMEOUT = "timeout"
ABANDONED = "abandoned"  # the server refused to start it: killed and not reported
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_OPEN = os.O_WRONLY | os.O_TRUNC  # an existing file: no directory change, no lock on it


def build_argv(command: str, invocation_script: str | None = None) -> list[str]:
    """The job's argv: its command split like a shell would, wrapped by its invocation script."""
    argv = _split(command)
    if not argv:
        raise ValueError("job command is empty")
    if invocation_script and invocation_script.strip():
        return [*_split(invocation_script), *argv]
    return list(argv)


@functools.lru_cache(maxsize=4096)
def _split(text: str) -> tuple[str, ...]:
    """shlex.split, remembered: sweeps repeat a few commands thousands of times, and splitting
    cost about 5% of the runner's time per short job."""
    return tuple(shlex.split(text))


def job_env(
    base: Mapping[str, str],
    *,
    workflow_key: str,
    job_key: str,
    run_id: int,
    compute_node_key: str | None = None,
    url: str | None = None,
    output_dir: str | Path | None = None,
) -> dict[str, str]:
    """The environment of a job: the runner's plus torc's and hpcflow's identity variables."""
    env = dict(base)
    env.update(
        {
            "TORC_WORKFLOW_KEY": workflow_key,
            "TORC_JOB_KEY": job_key,
            "HPCFLOW_WORKFLOW_KEY": workflow_key,
            "HPCFLOW_JOB_KEY": job_key,
            "HPCFLOW_RUN_ID": str(run_id),
        }
    )
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


class Spawned:
    """A process started with posix_spawn: the part of Popen's interface the runner uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Reap the process if it has exited; its return code (-N for signal N) or None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        """Block until the process exits; its return code."""
        while self.returncode is None:
            try:
                _pid, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                break
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode if self.returncode is not None else -9


def spawn(
    argv: list[str],
    env: Mapping[str, str],
    stdout: str,
    stderr: str,
    made: tuple[bool, bool] = (False, False),
) -> Spawned:
    """Start a job with posix_spawn: the child opens its own output files and leads a new
    session (so signals reach its children). Cheaper than Popen for thousands of short jobs:
    no pipes, no descriptors to open and close here. `made`: the files exist already (made
    ahead, outputs.py), so the child opens them without creating."""
    path = env.get("PATH", os.defpath)
    for retry in (False, True):
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, stdout, _OPEN if made[0] else _CREATE, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, stderr, _OPEN if made[1] else _CREATE, 0o644),
        ]
        exe = executable(argv[0], path)
        try:
            return Spawned(os.posix_spawn(exe, argv, env, file_actions=actions, setsid=True))
        except FileNotFoundError:
            # A file made ahead was removed, or the remembered program is gone (or an output
            # folder is missing): create the files and search once more.
            forgot = _FOUND.pop((argv[0], path), None) is not None
            if retry or not (forgot or any(made)):
                raise
            made = (False, False)
    raise AssertionError("unreachable")


_FOUND: dict[tuple[str, str], str] = {}


def executable(name: str, path: str) -> str:
    """The file a bare command name runs, found on `path` once and remembered.

    posix_spawnp searches PATH in the child for every job, one failed execve per directory
    before the right one: with eight directories ahead of /usr/bin that doubled the CPU cost of
    a short job. Only hits are remembered, so a program installed later is still found.
    """
    if "/" in name:
        return name
    found = _FOUND.get((name, path))
    if found is None:
        found = shutil.which(name, path=path)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, f"{name!r} not found on PATH", name)
        _FOUND[(name, path)] = found
    return found


@dataclass(eq=False)
class Run:
    """One running (or finished) process of one job."""

    job: dict[str, Any]
    run_id: int
    proc: subprocess.Popen[bytes] | Spawned
    out_path: str  # strings: a Path per file cost more per short job than the rest of start()
    err_path: str
    started: float  # wall clock, for results
    started_mono: float  # perf_counter, for latencies
    rev: str = ""
    exited_mono: float | None = None
    stop_reason: str | None = None
    stop_deadline: float | None = None  # monotonic time at which SIGKILL follows SIGTERM
    notes: list[str] = field(default_factory=list)
    fd: int | None = None  # pidfd the supervisor selects on

    @property
    def key(self) -> str:
        """The job's key."""
        return str(self.job["_key"])

    @property
    def stdout(self) -> Path:
        """The run's stdout file."""
        return Path(self.out_path)

    @property
    def stderr(self) -> Path:
        """The run's stderr file."""
        return Path(self.err_path)

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
        self._out = str(self.output_dir)
        self.workflow_key = workflow_key
        self.running: dict[str, Run] = {}
        self._selector = selectors.DefaultSelector()
        # A pipe wakes the select: os.write is safe from signal handlers and other threads.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._exited: list[Run] = []  # reaped by waiter threads (no pidfd support)
        self._lock = threading.Lock()
        self._pidfds = hasattr(os, "pidfd_open")
        self._made_dir = False
        self.outputs = OutputFiles(self._out)

    def prepare(self, job_keys: list[str], run_id: int) -> None:
        """Have these jobs' output files created ahead of their start (outputs.py)."""
        if self.outputs.enabled and job_keys:
            self.outputs.expect([p for k in job_keys for p in self.paths(k, run_id)])

    def paths(self, job_key: str, run_id: int) -> tuple[str, str]:
        """Where one run's stdout and stderr go."""
        # String joins: two Path operations per job cost more than the rest of this method.
        stem = os.path.join(self._out, f"wf{self.workflow_key}_job{job_key}_run{run_id}")
        return stem + ".o", stem + ".e"

    def start(
        self,
        job: dict[str, Any],
        run_id: int,
        env: Mapping[str, str],
        cwd: str | Path | None = None,
    ) -> Run:
        """Launch one job; raises OSError/ValueError when it cannot start."""
        argv = build_argv(job["command"], job.get("invocation_script"))
        out_path, err_path = self.paths(str(job["_key"]), run_id)
        if not self._made_dir:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._made_dir = True
        started = time.time()
        proc: subprocess.Popen[bytes] | Spawned
        made = (self.outputs.take(out_path), self.outputs.take(err_path))
        if cwd is None and hasattr(os, "posix_spawn"):
            proc = spawn(argv, env, out_path, err_path, made)
        else:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                # A new session makes the job a process-group leader, so signals reach its
                # children.
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                )
        run = Run(
            job=job,
            run_id=run_id,
            proc=proc,
            out_path=out_path,
            err_path=err_path,
            started=started,
            started_mono=time.perf_counter(),
            rev=str(job.get("_rev", "")),
        )
        self.running[run.key] = run
        if self._pidfds:
            try:
                run.fd = os.pidfd_open(proc.pid)
                self._selector.register(run.fd, selectors.EVENT_READ, run)
                return run
            except OSError:  # e.g. a kernel without pidfds: use a thread from now on
                self._pidfds = False
        threading.Thread(
            target=self._wait, args=(run,), name=f"wait-{run.key}", daemon=True
        ).start()
        return run

    def _wait(self, run: Run) -> None:
        run.proc.wait()
        run.exited_mono = time.perf_counter()
        with self._lock:
            self._exited.append(run)
        self.wake()

    def pending(self) -> bool:
        """True when an exit (or wake-up) is waiting and the loop should not start other work."""
        return bool(self._exited) or bool(self._selector.select(0))

    def wake(self) -> None:
        """Make a blocked wait() return now (safe from signal handlers and other threads)."""
        with contextlib.suppress(BlockingIOError):  # a full pipe already wakes the select
            os.write(self._wake_w, b"!")

    def watch(self, sock: Any, on_readable: Callable[[], None]) -> None:
        """Also wake for a socket (the reporter's reply); wait() calls on_readable for it."""
        self._selector.register(sock, selectors.EVENT_READ, on_readable)

    def unwatch(self, sock: Any) -> None:
        """Stop waking for a socket."""
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def wait(self, timeout: float | None) -> list[Run]:
        """Block until a process exits (or wake/timeout), then return every exit so far."""
        found: list[Run] = []
        events = self._selector.select(None if timeout is None else max(0.0, timeout))
        now = time.perf_counter()
        for key, _mask in events:
            run = key.data
            if run is None:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
                continue
            if not isinstance(run, Run):
                run()  # a watched socket
                continue
            if run.proc.poll() is None:
                continue  # cannot happen: a readable pidfd means the process has exited
            run.exited_mono = now
            self._forget(run)
            found.append(run)
        if self._exited:
            with self._lock:
                found.extend(self._exited)
                self._exited.clear()
        for run in found:
            self.running.pop(run.key, None)
        return found

    def _forget(self, run: Run) -> None:
        if run.fd is not None:
            self._selector.unregister(run.fd)
            os.close(run.fd)
            run.fd = None

    def close(self) -> None:
        """Release the pidfds and the wake-up pipe (the supervisor is done)."""
        for run in list(self.running.values()):
            self._forget(run)
        self._selector.close()
        self.outputs.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

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
