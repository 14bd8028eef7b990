"""The runner's batched reports: a lookahead queue given back on stop, and single-job fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcflow.client import Client
from hpcflow.runner.loop import Runner
from hpcflow.runner.options import RunnerOptions
from hpcflow.runner.remote import Remote
from hpcflow.runner.resources import Offer
from tests.runner.conftest import build, jobs_by_name, py, results_by_key, run_runner

GIB = 1024**3


def test_short_jobs_are_queued_ahead_and_given_back_on_stop(api: Client, tmp_path: Path) -> None:
    n = 60
    wf, _keys = build(api, [{"name": f"j{i}", "command": "true"} for i in range(n)])
    first_rev = {name: int(j["_rev"]) for name, j in jobs_by_name(api, wf).items()}
    held: list[int] = []

    def on_finish(_job: dict[str, Any], _status: str, _code: int) -> None:
        if runner.counts["done"] == 20:
            held.append(len(runner.queue))
            runner.request_stop("signal")

    opts = RunnerOptions(
        output_dir=tmp_path / "out",
        idle_timeout=5,
        status_interval=0.1,
        log_tail_bytes=0,
        lookahead_seconds=0.5,
    )
    runner = Runner(api, wf, Offer(num_cpus=1, memory_bytes=GIB), opts, on_finish=on_finish)
    outcome = runner.run()
    assert outcome.reason == "signal", outcome
    assert held and held[0] > 0, "short jobs were claimed ahead of the free CPU"
    jobs = jobs_by_name(api, wf)
    statuses = {j["status"] for j in jobs.values()}
    assert statuses <= {"done", "ready"}, statuses  # nothing left claimed or running
    done = [name for name, j in jobs.items() if j["status"] == "done"]
    assert len(done) == outcome.counts["done"] and len(results_by_key(api, wf)) == len(done)
    # Queued jobs went back to ready: claimed (+1) and released (+1) since initialization.
    released = [
        name
        for name, j in jobs.items()
        if j["status"] == "ready" and int(j["_rev"]) == first_rev[name] + 2
    ]
    assert released, "the queue was released to ready"
    # Another runner then runs the rest.
    _runner, outcome = run_runner(api, wf, tmp_path, cpus=2, log_tail_bytes=0)
    assert outcome.reason == "complete"
    assert {j["status"] for j in jobs_by_name(api, wf).values()} == {"done"}


def test_a_server_without_batch_operations_gets_single_job_calls(
    api: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(Remote, "has_batch", lambda self, run_id, node: False)
    for name in ("start_job", "complete_job", "complete_jobs"):
        original = getattr(Remote, name)

        def spy(self: Remote, *args: Any, _name: str = name, _orig: Any = original) -> Any:
            calls.append(_name)
            return _orig(self, *args)

        monkeypatch.setattr(Remote, name, spy)
    wf, keys = build(
        api,
        [
            {"name": "a", "command": py("pass")},
            {"name": "b", "command": py("import sys; sys.exit(2)"), "blocked_by": ["a"]},
            {"name": "c", "command": py("pass"), "blocked_by": ["b"]},
        ],
    )
    _runner, outcome = run_runner(api, wf, tmp_path)
    assert outcome.reason == "complete", outcome
    assert {n: j["status"] for n, j in jobs_by_name(api, wf).items()} == {
        "a": "done",
        "b": "done",
        "c": "canceled",
    }
    assert results_by_key(api, wf)[keys["b"]]["return_code"] == 2
    assert calls.count("start_job") == 2 and calls.count("complete_job") == 2
    assert "complete_jobs" not in calls
