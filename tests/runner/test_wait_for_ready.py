"""wait_for_ready (long poll) on both databases, and a cross-runner wake-up through it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from hpcflow.client import Client
from hpcflow.engine import readiness
from hpcflow.runner.embedded import EmbeddedServer
from tests.runner.conftest import build, py, run_runner


def _workflow(client: Any, workflow: str, n_ready: int, n_blocked: int) -> list[str]:
    base = f"/workflows/{workflow}"
    first = [
        client.post(f"{base}/jobs", json={"command": "true"}).json["_key"] for _ in range(n_ready)
    ]
    for _ in range(n_blocked):
        client.post(f"{base}/jobs", json={"command": "true", "blocked_by": [f"jobs/{first[0]}"]})
    assert client.post(f"{base}/initialize_jobs").status_code == 200
    return first


def test_wait_for_ready_api(client: Any, workflow: str) -> None:
    url = f"/workflows/{workflow}/wait_for_ready"
    _workflow(client, workflow, n_ready=2, n_blocked=1)
    now = client.get(f"{url}?timeout=5").json
    assert now == {"num_ready": 2, "is_complete": False, "is_canceled": False, "timed_out": False}
    same = client.get(f"{url}?timeout=0&ready_count=2").json
    assert same["timed_out"] is True and same["num_ready"] == 2
    assert client.get(f"{url}?timeout=61").status_code == 422
    assert client.get(f"{url}?timeout=x").status_code == 400
    assert client.get(f"{url}?ready_count=-1").status_code == 422
    assert client.get("/workflows/999/wait_for_ready").status_code == 404
    assert client.put(f"/workflows/{workflow}/cancel", json={}).status_code == 200
    gone = client.get(f"{url}?timeout=5&ready_count=2").json
    assert gone["is_canceled"] is True and gone["num_ready"] == 0


def test_wait_for_ready_wakes_when_the_count_changes(app: Any, client: Any, workflow: str) -> None:
    [first] = _workflow(client, workflow, n_ready=1, n_blocked=0)
    state = app.extensions["hpcflow"]
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # the job becomes claimed by someone while we wait
        naps.append(seconds)
        if len(naps) == 3:
            with state.sessions() as other, other.begin():
                from hpcflow.models import Job

                other.get(Job, int(first)).status = "submitted_pending"

    session = state.sessions()
    try:
        out = readiness.wait_for_ready(session, workflow, timeout=30, ready_count=1, sleep=sleep)
    finally:
        session.close()
    assert out["num_ready"] == 0 and out["timed_out"] is False and len(naps) == 3
    assert naps == sorted(naps) and naps[0] == readiness.FIRST_DELAY  # backoff grows
    session = state.sessions()
    try:
        empty = readiness.wait_for_ready(session, workflow, timeout=0, ready_count=0)
    finally:
        session.close()
    assert empty["timed_out"] is True  # the job is claimed but unfinished: nothing changed


def test_idle_runner_is_woken_by_another_runners_completion(
    server: EmbeddedServer, api: Client, tmp_path: Path
) -> None:
    # "first" needs 2 CPUs (only runner A has them); "second" needs a GPU (only runner B).
    wf, keys = build(
        api,
        [
            {"name": "first", "command": py("import time; time.sleep(0.5)"), "cpus": 2},
            {"name": "second", "command": py("pass"), "gpus": 1, "blocked_by": ["first"]},
        ],
    )
    found: dict[str, Any] = {}

    def runner_b() -> None:
        found["b"] = run_runner(
            Client(server.url),
            wf,
            tmp_path / "b",
            cpus=1,
            gpus=1,
            trace=True,
            poll_interval=30.0,
            status_interval=30.0,
            idle_timeout=30.0,
        )

    thread = threading.Thread(target=runner_b)
    thread.start()
    runner_a, outcome_a = run_runner(
        api,
        wf,
        tmp_path / "a",
        cpus=2,
        gpus=0,
        trace=True,
        poll_interval=30.0,
        status_interval=30.0,
        idle_timeout=30.0,
    )
    thread.join(60)
    runner_b_obj, outcome_b = found["b"]
    assert outcome_a.reason == outcome_b.reason == "complete"
    [(key_a, _start_a, exit_a)] = runner_a.trace
    [(key_b, start_b, _exit_b)] = runner_b_obj.trace
    assert (key_a, key_b) == (keys["first"], keys["second"])
    wake = start_b - exit_a
    print(f"\ncross-runner wake-up: {wake * 1000:.1f} ms")
    assert 0 < wake < 5.0  # long poll, not the 30 s poll interval
    assert time.perf_counter() - exit_a < 60
