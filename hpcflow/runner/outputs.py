"""Jobs' stdout and stderr files, created ahead of their start on a thread of their own.

Creating a file is a directory change. On tmpfs it costs 10 us; on a journaled disk it cost
0.26-0.88 ms here (ext4 mounted with `discard`, slower still right after many deletions), twice
per job, inside posix_spawn, where the runner waits for it. Opening a file that already exists
costs 10 us on either. So the runner names the files of jobs it will soon start (its lookahead
queue, its successor hints) and this thread creates them, empty; the job's process then opens
its files without O_CREAT. Files are created with O_EXCL and never truncated here, so a job
that got there first keeps its output. Where creating is cheap (tmpfs) the thread only costs
the runner GIL time, so it measures its first files and stops when they were fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import statistics
import threading
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL
PROBE = 32  # files timed before deciding whether making them ahead pays
CHEAP = 100e-6  # seconds: creating a file faster than this is not worth a thread


class OutputFiles:
    """Create files ahead of need; `take(path)` says whether one is there for a job to open."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.enabled = True
        self._todo: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # expected, not created yet
        self._made: set[str] = set()  # created here, not yet taken by a job
        self._times: list[float] = []
        self._thread: threading.Thread | None = None

    def expect(self, paths: Iterable[str]) -> None:
        """Create these files soon (the thread starts on first use)."""
        if not self.enabled:
            return
        with self._lock:
            batch = [p for p in paths if p not in self._pending and p not in self._made]
            self._pending.update(batch)
        if not batch:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="output-files", daemon=True)
            self._thread.start()
        self._todo.put(batch)

    def take(self, path: str) -> bool:
        """True when `path` was created here (empty) and is now the caller's to open; False
        when the caller must create it (and then this thread leaves it alone)."""
        with self._lock:
            if path in self._made:
                self._made.remove(path)
                return True
            self._pending.discard(path)
            return False

    def close(self) -> None:
        """Stop the thread. Files no job took stay: the job may yet run on another node that
        shares this folder (a released or hinted job), and unlinking would lose its output."""
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            self._made.clear()
            self._pending.clear()

    def _work(self) -> None:
        with contextlib.suppress(OSError):
            os.makedirs(self.folder, exist_ok=True)
        while (batch := self._todo.get()) is not None:
            for path in batch:
                if self.enabled:
                    self._make(path)

    def _make(self, path: str) -> None:
        with self._lock:
            if path not in self._pending:
                return  # its job started first and made it
        began = time.perf_counter()
        try:
            os.close(os.open(path, _NEW, 0o644))
        except FileExistsError:
            made = False  # a job (or an earlier run) made it: not ours to hand out
        except OSError as exc:  # the job's own open will report a real problem
            log.debug("could not create %s ahead: %s", path, exc)
            made = False
        else:
            made = True
            self._measure(time.perf_counter() - began)
        with self._lock:
            # Taken meanwhile: the job opened it itself (O_CREAT); it is the job's now.
            if path in self._pending:
                self._pending.remove(path)
                if made:
                    self._made.add(path)

    def _measure(self, seconds: float) -> None:
        """Stop making files ahead once the first PROBE of them proved cheap to create."""
        if len(self._times) >= PROBE:
            return
        self._times.append(seconds)
        if len(self._times) == PROBE and statistics.median(self._times) < CHEAP:
            log.debug("creating files takes %.0f us here: not made ahead", seconds * 1e6)
            self.enabled = False
            with self._lock:
                self._pending.clear()
