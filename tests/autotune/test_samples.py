"""Sample arithmetic: histogram percentiles, rounding within bounds, pairing stats with runs."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from hpcflow.autotune.samples import (
    MIB,
    bounded,
    cpus_for,
    duration_text,
    hist_add,
    hist_percentile,
    nearest_rank,
    pair,
)
from hpcflow.units import parse_duration


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=1.0, max_value=1e12), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.95, 0.99, 1.0]),
)
def test_histogram_percentile_is_at_most_one_percent_high(values: list[float], q: float) -> None:
    hist = hist_add({}, values)
    exact = nearest_rank(values, q)
    got = hist_percentile(hist, q, max(values))
    assert exact * (1 - 1e-9) <= got <= exact * 1.01 + 1e-9


def test_few_samples_give_the_maximum_and_zero_is_its_own_bucket() -> None:
    assert hist_percentile(hist_add({}, [3.0, 9.0, 5.0]), 0.95, 9.0) == 9.0
    assert hist_percentile(hist_add({}, [0.0, 0.0, 7.0]), 0.5, 7.0) == 0.0
    assert hist_percentile({}, 0.95, 0.0) == 0.0


@given(st.floats(min_value=5 * MIB, max_value=1e12))
def test_bounded_memory_lies_between_peak_and_peak_times_margin(peak: float) -> None:
    got = bounded(peak, peak * 1.2, MIB)
    assert peak <= got <= peak * 1.2 and got % MIB == 0


@given(st.floats(min_value=0.5, max_value=1e6))
def test_runtime_text_round_trips_within_bounds(seconds: float) -> None:
    got = parse_duration(duration_text(bounded(seconds, seconds * 1.3, 0.1)))
    assert seconds - 1e-6 <= got <= seconds * 1.3 + 1e-6


def test_formats_and_cpus() -> None:
    assert duration_text(72) == "P0DT1M12S" and duration_text(2.7) == "P0DT2.7S"
    assert duration_text(3723.5) == "P0DT1H2M3.5S"
    assert [cpus_for(p) for p in (0, 95, 120, 126, 350)] == [1, 1, 1, 2, 4]


@dataclass
class Run:
    completion_time: str
    name: str


def test_pair_picks_the_attempt_completed_just_before_the_stats() -> None:
    runs = [Run("2024-01-01T00:00:01+00:00", "killed"), Run("2024-01-01T00:00:05", "ok")]
    assert pair(runs, "2024-01-01T00:00:02+00:00") is runs[0]
    assert pair(runs, "2024-01-01T00:00:06Z") is runs[1]
    assert pair(runs, "not a time") is runs[1]
    assert pair(runs, "2023-12-31T00:00:00") is runs[1]  # clocks disagree: the latest
    assert pair([], "2024-01-01T00:00:00") is None
