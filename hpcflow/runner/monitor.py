"""Sample each job's process tree (RSS, CPU) with psutil; enforce memory limits; node stats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil

from hpcflow.runner.processes import OUT_OF_MEMORY, Run


@dataclass
class Series:
    """Running min/max/sum of one measurement."""

    total: float = 0.0
    peak: float = 0.0
    low: float = float("inf")
    count: int = 0

    def add(self, value: float) -> None:
        """Fold one sample in."""
        self.total += value
        self.peak = max(self.peak, value)
        self.low = min(self.low, value)
        self.count += 1

    @property
    def average(self) -> float:
        """Mean of the samples (0 without samples)."""
        return self.total / self.count if self.count else 0.0


@dataclass
class Tracked:
    """What the monitor keeps per running job."""

    run: Run
    memory_limit: float | None
    procs: dict[int, psutil.Process] = field(default_factory=dict)
    rss: Series = field(default_factory=Series)
    cpu: Series = field(default_factory=Series)


def _lifetime_cpu(proc: psutil.Process) -> float:
    """CPU percent of a process averaged over its life; sets cpu_percent's baseline."""
    proc.cpu_percent(None)
    times = proc.cpu_times()
    return 100.0 * (times.user + times.system) / max(1e-3, time.time() - proc.create_time())


def now_iso() -> str:
    """UTC now as ISO 8601."""
    return datetime.now(UTC).isoformat()


class Monitor:
    """A background thread that samples every `interval` seconds until stopped."""

    def __init__(
        self,
        interval: float,
        *,
        node_stats: bool = True,
        on_kill: Callable[[Run], None] | None = None,
    ) -> None:
        self.interval = interval
        self.node_stats = node_stats
        self.on_kill = on_kill
        self._jobs: dict[str, Tracked] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.node_cpu = Series()
        self.node_memory = Series()

    def start(self) -> None:
        """Start sampling in a daemon thread."""
        if self._thread is None and self.interval > 0:
            psutil.cpu_percent(None)  # prime the system-wide counter
            self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the sampling thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def add(self, run: Run, memory_limit: float | None = None) -> None:
        """Track a freshly started job; memory_limit (bytes) kills it when RSS exceeds it."""
        # The process is looked at first by the next sample: most short jobs never cost a
        # psutil lookup, which matters at thousands of jobs a second.
        tracked = Tracked(run, memory_limit)
        with self._lock:
            self._jobs[run.key] = tracked

    def remove(self, key: str) -> Tracked | None:
        """Stop tracking a job and return what was measured."""
        with self._lock:
            return self._jobs.pop(key, None)

    def sample(self) -> None:
        """One sample of every tracked job (and the node); kills jobs over their memory limit."""
        with self._lock:
            jobs = list(self._jobs.values())
        for tracked in jobs:
            measured = self._measure(tracked)
            if measured is None:
                continue
            rss, cpu = measured
            tracked.rss.add(rss)
            tracked.cpu.add(cpu)
            if tracked.memory_limit is not None and rss > tracked.memory_limit:
                tracked.run.notes.append(
                    f"RSS {rss / 1024**2:.0f} MiB exceeded the limit of "
                    f"{tracked.memory_limit / 1024**2:.0f} MiB"
                )
                tracked.run.stop(OUT_OF_MEMORY)
                if self.on_kill:
                    self.on_kill(tracked.run)
        if self.node_stats:
            self.node_cpu.add(psutil.cpu_percent(None))
            self.node_memory.add(psutil.virtual_memory().percent)

    @staticmethod
    def _measure(tracked: Tracked) -> tuple[float, float] | None:
        """Total RSS and CPU percent of the job's process tree, or None once it is gone."""
        if tracked.run.proc.returncode is not None:
            return None
        leader = tracked.procs.get(tracked.run.pid)
        if leader is None:
            try:
                leader = psutil.Process(tracked.run.pid)
            except psutil.Error:
                return None  # already gone: nothing to sample
        try:
            children = leader.children(recursive=True)
        except psutil.Error:
            return None
        alive = {tracked.run.pid: leader}
        for child in children:
            # Keep one Process object per pid so cpu_percent measures since the last sample.
            alive[child.pid] = tracked.procs.get(child.pid, child)
        known = tracked.procs
        tracked.procs = alive
        rss = cpu = 0.0
        seen = False
        for pid, proc in alive.items():
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    # A process seen for the first time: its average over its life so far
                    # (cpu_percent's first call only sets the baseline for the next sample).
                    cpu += proc.cpu_percent(None) if pid in known else _lifetime_cpu(proc)
                seen = True
            except psutil.Error:
                continue
        return (rss, cpu) if seen else None

    @staticmethod
    def process_stats(tracked: Tracked) -> dict[str, Any] | None:
        """torc's job_process_stats document for one run, or None without samples."""
        if tracked.rss.count == 0:
            return None
        return {
            "job_key": tracked.run.key,
            "run_id": tracked.run.run_id,
            "avg_cpu_percent": tracked.cpu.average,
            "max_cpu_percent": tracked.cpu.peak,
            "avg_rss": tracked.rss.average,
            "max_rss": tracked.rss.peak,
            "num_samples": tracked.rss.count,
            "timestamp": now_iso(),
        }

    def node_stats_doc(self, hostname: str) -> dict[str, Any] | None:
        """torc's compute_node_stats document (CPU and memory percent), or None without samples."""
        if self.node_cpu.count == 0:
            return None
        stats = [
            {
                "resource_type": name,
                "average": series.average,
                "minimum": series.low,
                "maximum": series.peak,
                "num_samples": series.count,
            }
            for name, series in (("Cpu", self.node_cpu), ("Memory", self.node_memory))
        ]
        return {"hostname": hostname, "stats": stats, "timestamp": now_iso()}
