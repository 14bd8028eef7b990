"""Process helpers for the test Slurm cluster: find, identify and stop only our own processes.

Pids are checked against /proc (command line, start time, environment) before any signal, so a
reused pid or another session's cluster is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is index 0), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rpartition(")")[2].split()


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def owner_token(pid: int) -> str:
    """'<pid> <start time>' naming one process for its whole life."""
    return f"{pid} {start_time(pid)}"


def owner_alive(token: str) -> bool:
    """Whether the process named by an owner token still runs."""
    pid_text, _, started = token.strip().partition(" ")
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return alive(pid) and start_time(pid) == started


def cmdline(pid: int) -> str:
    """The process's command line with spaces between arguments ('' when unreadable)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def environ(pid: int) -> set[str]:
    """The process's environment as NAME=value strings (empty when unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return set()
    return {item.decode(errors="replace") for item in raw.split(b"\0") if item}


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop_pid(pid_text: str, must_contain: str, *, timeout: float) -> bool:
    """SIGTERM the pid if its command line names `must_contain`, then SIGKILL after timeout.

    Returns whether the process is gone (True also when it was not ours or not there).
    """
    if not pid_text.strip().isdigit():
        return True
    pid = int(pid_text)
    if not alive(pid) or must_contain not in cmdline(pid):
        return True
    _signal(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return True
    _signal(pid, signal.SIGKILL)
    return _wait_gone(pid, 5.0)


def _ancestors() -> set[int]:
    """This process and its parents, which must never be signalled."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        fields = _stat_fields(pid)
        pid = int(fields[1]) if fields else 0
    return pids


def job_processes(conf_path: str) -> list[int]:
    """Pids of slurmstepd and job processes launched by the cluster using this slurm.conf."""
    marker = f"SLURM_CONF={conf_path}"
    spare = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spare:
            continue
        pid = int(entry.name)
        env = environ(pid)
        if marker not in env or not alive(pid):
            continue
        is_job = any(item.startswith("SLURM_JOB_ID=") for item in env)
        if is_job or cmdline(pid).startswith("slurmstepd"):
            found.append(pid)
    return found


def kill_job_processes(conf_path: str) -> list[int]:
    """SIGKILL job processes a stopped cluster left behind (e.g. when slurmctld was dead)."""
    pids = job_processes(conf_path)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    for pid in pids:
        _wait_gone(pid, 5.0)
    return pids
