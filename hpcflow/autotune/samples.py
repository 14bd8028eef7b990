"""Samples of what jobs used: percentiles, pairing stats with their run, rounding requirements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from hpcflow.units import format_duration

MIB = 1024**2
# Histogram buckets are 1 % wide: a percentile read from them is at most 1 % high.
BUCKET = 1.01
_LOG_BUCKET = math.log(BUCKET)
ZERO = "z"
# A busy thread's CPU samples overshoot by one scheduler tick per sample interval (10 ms in
# 50 ms reads as 120 %); a quarter of a core absorbs that before another CPU is asked for.
CPU_JITTER = 0.25
RUNTIME_STEP = 0.1


def bucket(value: float) -> str:
    """The histogram bucket of a value (JSON object keys are strings)."""
    if value <= 0:
        return ZERO
    return str(math.floor(math.log(value) / _LOG_BUCKET))


def hist_add(hist: dict[str, int], values: Sequence[float]) -> dict[str, int]:
    """A new histogram with the values counted in (JSON columns need a new object to save)."""
    out = dict(hist)
    for value in values:
        key = bucket(value)
        out[key] = out.get(key, 0) + 1
    return out


def _order(key: str) -> float:
    return -math.inf if key == ZERO else int(key)


def hist_percentile(hist: dict[str, int], q: float, peak: float) -> float:
    """Nearest-rank percentile q (0..1) from a histogram: its bucket's upper edge, <= peak."""
    n = sum(hist.values())
    if n == 0:
        return 0.0
    rank = max(1, math.ceil(q * n - 1e-9))
    seen = 0
    for key in sorted(hist, key=_order):
        seen += hist[key]
        if seen >= rank:
            return 0.0 if key == ZERO else min(BUCKET ** (int(key) + 1), peak)
    return peak


def nearest_rank(values: Sequence[float], q: float) -> float:
    """Exact nearest-rank percentile q (0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


def bounded(peak: float, target: float, step: float) -> float:
    """`target` rounded down to a multiple of step, but never below `peak` rounded up."""
    return max(math.ceil(peak / step - 1e-9) * step, math.floor(target / step + 1e-9) * step)


def memory_text(num_bytes: float) -> str:
    """A whole number of MiB as torc writes memory ('360m')."""
    return f"{max(1, math.ceil(num_bytes / MIB - 1e-9))}m"


def duration_text(seconds: float) -> str:
    """ISO 8601 duration with tenths of a second when needed ('P0DT2.7S', 'P0DT1M12S')."""
    tenths = max(1, round(seconds * 10))
    whole, frac = divmod(tenths, 10)
    if frac == 0:
        return format_duration(whole)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        f"P{days}DT"
        + (f"{hours}H" if hours else "")
        + (f"{minutes}M" if minutes else "")
        + f"{secs}.{frac}S"
    )


def cpus_for(cpu_percent: float) -> int:
    """CPUs that cover a CPU-percent reading (100 % per core, sampling jitter forgiven)."""
    return max(1, math.ceil(cpu_percent / 100 - CPU_JITTER))


class Attempt(Protocol):
    """What pairing needs of a result row."""

    completion_time: str


def when(stamp: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (naive means UTC), None if unreadable."""
    try:
        moment = datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


R = TypeVar("R", bound=Attempt)


def pair(results: Sequence[R], stats_timestamp: str) -> R | None:
    """The attempt a stats document describes: the last result (by id) completed at or before
    the stats were taken. A runner stores a run's stats right after its result, so a job that
    was retried within one run still pairs each attempt with its own stats."""
    if not results:
        return None
    taken = when(stats_timestamp)
    if taken is not None:
        for result in reversed(results):
            done = when(result.completion_time)
            if done is not None and done <= taken:
                return result
    return results[-1]
