"""Upload the tail of each run's stdout/stderr so nodes without a shared filesystem show logs."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from hpcflow.runner.monitor import now_iso
from hpcflow.runner.processes import Run

DEFAULT_TAIL_BYTES = 64 * 1024


def tail(path: Path, max_bytes: int) -> tuple[str, int, bool]:
    """The last `max_bytes` of a file as text, its full size, and whether it was cut."""
    try:
        size = path.stat().st_size
    except OSError:
        return "", 0, False
    if size == 0 or max_bytes <= 0:
        return "", size, size > 0
    with open(path, "rb") as fh:
        if size > max_bytes:
            fh.seek(size - max_bytes, os.SEEK_SET)
        data = fh.read(max_bytes)
    return data.decode("utf-8", errors="replace"), size, size > max_bytes


def log_record(
    run: Run, max_bytes: int, compute_node_key: str | None = None, hostname: str | None = None
) -> dict[str, Any] | None:
    """One job_log document for a finished run; None when it wrote nothing."""
    out, out_size, out_cut = tail(run.stdout, max_bytes)
    err, err_size, err_cut = tail(run.stderr, max_bytes)
    if out_size == 0 and err_size == 0:
        return None
    return {
        "job_key": run.key,
        "run_id": run.run_id,
        "stdout": out,
        "stderr": err,
        "stdout_bytes": out_size,
        "stderr_bytes": err_size,
        "truncated": out_cut or err_cut,
        "compute_node_key": compute_node_key,
        "hostname": hostname or socket.gethostname(),
        "timestamp": now_iso(),
    }


class LogBuffer:
    """Log documents waiting to go up in one bulk request."""

    def __init__(self, max_bytes: int = DEFAULT_TAIL_BYTES, batch: int = 100) -> None:
        self.max_bytes = max_bytes
        self.batch = batch
        self.pending: list[dict[str, Any]] = []

    def add(self, run: Run, compute_node_key: str | None) -> None:
        """Queue the run's log tail (when it wrote anything and uploads are enabled)."""
        if self.max_bytes <= 0:
            return
        record = log_record(run, self.max_bytes, compute_node_key)
        if record is not None:
            self.pending.append(record)

    @property
    def full(self) -> bool:
        """True when a batch is ready to go."""
        return len(self.pending) >= self.batch

    def take(self) -> list[dict[str, Any]]:
        """Everything queued, emptying the buffer."""
        items, self.pending = self.pending, []
        return items
