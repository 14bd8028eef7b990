"""A fast autoscaler loop backs off while its ticks find nothing to do, and not past 2 s."""

from __future__ import annotations

from typing import Any

import pytest

from hpcflow.autoscale import loop
from hpcflow.autoscale.report import TickReport
from hpcflow.config import Settings


def ticks(monkeypatch: pytest.MonkeyPatch, interval: float, reports: list[TickReport]) -> str:
    """Run the loop for len(reports) scheduled intervals; 'T' where a tick ran, '.' skipped."""
    queue = list(reports)
    ran: list[int] = []

    def fake_run_once(*_args: Any, **_kw: Any) -> TickReport:
        ran.append(1)
        return queue.pop(0)

    monkeypatch.setattr(loop, "run_once", fake_run_once)
    scaler = loop.Autoscaler(None, Settings(autoscale_interval_seconds=interval), {})  # type: ignore[arg-type]
    marks = ""
    for _ in range(len(reports)):
        before = len(ran)
        scaler.run()
        marks += "T" if len(ran) > before else "."
        if len(ran) == before:
            queue.pop(0)  # the interval passed without a tick
    return marks


def test_quiet_ticks_double_the_gap_up_to_two_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = [TickReport() for _ in range(30)]
    # 0.25 s interval: gaps of 1, 2, 4, then 7 skipped intervals (2 s between ticks).
    assert ticks(monkeypatch, 0.25, quiet) == "T.T..T....T.......T.......T..."


def test_a_tick_that_acts_resets_the_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    reports = [TickReport() for _ in range(12)]
    reports[5] = TickReport(launched={"local": 1})  # the third tick launches a node
    assert ticks(monkeypatch, 0.25, reports) == "T.T..TT.T..T"


def test_slow_loops_never_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ticks(monkeypatch, 10.0, [TickReport() for _ in range(5)]) == "TTTTT"
