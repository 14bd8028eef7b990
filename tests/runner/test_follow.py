"""Successors: the runner starts a job as its blockers exit here, and the server confirms it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from hpcflow.client import Client
from hpcflow.runner.follow import Successors
from tests.runner.conftest import build, jobs_by_name, py, results_by_key, run_runner


def hint(key: str, *after: str) -> dict[str, Any]:
    return {"job": {"_key": key, "_rev": "2", "command": "true"}, "after": list(after)}


def test_successors_are_released_by_their_last_blocker() -> None:
    table = Successors()
    hints = [hint("b", "a"), hint("c", "b"), hint("d", "a", "x")]
    assert table.add(hints, set(), set(), {"a", "x"}) == [] and len(table) == 3
    assert [j["_key"] for j in table.finished("a", ok=True)] == ["b"]
    assert table.finished("b", ok=True)[0]["_key"] == "c"
    assert [j["_key"] for j in table.finished("x", ok=True)] == ["d"]
    assert len(table) == 0


def test_new_hints_skip_what_ran_and_release_what_already_exited() -> None:
    table = Successors()
    hints = [hint("b", "a"), hint("c", "b"), hint("d", "c")]
    ready = table.add(hints, {"a"}, {"c"}, {"a", "c"})
    # a exited 0 after the server answered: b may start now; c already runs here.
    assert [j["_key"] for j in ready] == ["b"]
    assert table.keys() == ["d"]
    assert table.finished("c", ok=True)[0]["_key"] == "d"


def test_hints_extend_the_ones_held_and_drop_what_waits_on_strangers() -> None:
    table = Successors()
    table.add([hint("b", "a")], set(), set(), {"a"})
    # The next answer walks on from b; e waits for a job this runner does not hold.
    table.add([hint("b", "a"), hint("c", "b"), hint("e", "z")], set(), set(), {"a"})
    assert table.keys() == ["b", "c"]


def test_a_failure_forgets_every_hint() -> None:
    table = Successors()
    table.add([hint("b", "a"), hint("y", "x")], set(), set(), {"a", "x"})
    assert table.finished("a", ok=False) == []
    assert table.finished("x", ok=True) == [] and len(table) == 0


def chain(n: int, log: Path, fail: str | None = None) -> list[dict[str, Any]]:
    """Jobs j0..j{n-1}, each blocked by the one before, appending its name to `log`."""
    jobs = []
    for i in range(n):
        name = f"j{i}"
        code = f"open({str(log)!r}, 'a').write({name!r} + '\\n')"
        if name == fail:
            code += "; raise SystemExit(3)"
        jobs.append({"name": name, "command": py(code), "blocked_by": [f"j{i - 1}"] if i else []})
    return jobs


def test_a_chain_runs_in_order_through_follows(api: Client, tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    n = 12
    wf, keys = build(api, chain(n, log))
    runner, outcome = run_runner(api, wf, tmp_path, cpus=2, log_tail_bytes=0)
    assert outcome.reason == "complete", outcome
    assert log.read_text().split() == [f"j{i}" for i in range(n)]
    # Every link after the first blocker was started here, before a round trip.
    assert outcome.counts["followed"] >= n - 2, outcome.counts
    jobs = jobs_by_name(api, wf)
    assert {j["status"] for j in jobs.values()} == {"done"}
    results = results_by_key(api, wf)
    assert sorted(results) == sorted(keys.values())
    assert all(r["return_code"] == 0 for r in results.values())
    assert runner.follows == set()


def test_a_failed_blocker_is_not_followed(api: Client, tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    wf, _keys = build(api, chain(6, log, fail="j2"))
    _runner, outcome = run_runner(api, wf, tmp_path, cpus=2, log_tail_bytes=0)
    assert log.read_text().split() == ["j0", "j1", "j2"]
    assert outcome.counts["failed"] == 1 and not outcome.ok
    statuses = {name: j["status"] for name, j in jobs_by_name(api, wf).items()}
    assert statuses == {
        "j0": "done",
        "j1": "done",
        "j2": "done",
        "j3": "canceled",
        "j4": "canceled",
        "j5": "canceled",
    }


def test_a_successor_changed_after_its_hint_is_killed_and_rerun(
    api: Client, tmp_path: Path
) -> None:
    """The runner follows b from its hint (sleep 60); b was edited meanwhile, so the server
    refuses the follow, the runner kills that process, and b runs again as edited."""
    wf, keys = build(
        api,
        [
            {"name": "a", "command": "sleep 1"},
            {"name": "b", "command": "sleep 60", "blocked_by": ["a"]},
        ],
    )
    base = f"/workflows/{wf}/jobs"

    def edit_b_once_a_runs() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if api.get(f"{base}/{keys['a']}")["status"] == "submitted":
                b = api.get(f"{base}/{keys['b']}")
                api.put(f"{base}/{keys['b']}", {**b, "command": "true"})
                return
            time.sleep(0.02)

    editor = threading.Thread(target=edit_b_once_a_runs)
    editor.start()
    started = time.monotonic()
    _runner, outcome = run_runner(api, wf, tmp_path, cpus=2, log_tail_bytes=0)
    editor.join()
    assert outcome.reason == "complete", outcome
    assert time.monotonic() - started < 30, "the refused follow was not killed"
    assert outcome.counts["followed"] == 1
    jobs = jobs_by_name(api, wf)
    assert jobs["b"]["status"] == "done" and jobs["b"]["command"] == "true"
    results = [r for r in api.iter_items(f"/workflows/{wf}/results") if r["job_key"] == keys["b"]]
    assert [r["return_code"] for r in results] == [0]
