"""End to end: walltime, runner SIGTERM, workflow cancel, memory and runtime limits."""

from __future__ import annotations

import time
from pathlib import Path

from hpcflow.client import Client
from tests.runner.conftest import build, jobs_by_name, py, results_by_key, run_runner

# Announces itself, then exits 0 on SIGTERM (a job that supports termination).
POLITE = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(0)))\n"
    "time.sleep(60)"
)


def test_walltime_buffer_terminates_running_jobs(api: Client, tmp_path: Path) -> None:
    wf, keys = build(
        api,
        [
            {
                "name": "polite",
                "command": py(POLITE),
                "runtime": "P0DT1S",
                "supports_termination": True,
            },
            {"name": "plain", "command": py("import time; time.sleep(60)"), "runtime": "P0DT1S"},
            {"name": "too_long", "command": py("pass"), "runtime": "P0DT1H"},
        ],
    )
    began = time.monotonic()
    _runner, outcome = run_runner(
        api, wf, tmp_path, time_limit="3s", walltime_buffer=1.5, termination_grace=20
    )
    took = time.monotonic() - began
    assert outcome.reason == "walltime", outcome
    assert 1.0 < took < 15
    jobs = jobs_by_name(api, wf)
    assert jobs["polite"]["status"] == jobs["plain"]["status"] == "terminated"
    assert jobs["too_long"]["status"] == "ready"  # never claimed: it could not finish in time
    results = results_by_key(api, wf)
    assert results[keys["polite"]]["return_code"] == 0  # it exited on SIGTERM by itself
    assert results[keys["plain"]]["return_code"] in (137, 143)
    assert results[keys["polite"]]["status"] == "terminated"
    [log] = api.get(f"/workflows/{wf}/jobs/{keys['polite']}/logs")["items"]
    assert log["stdout"] == "got TERM\n"


def test_runner_sigterm_is_an_orderly_stop(api: Client, tmp_path: Path) -> None:
    # The job signals its parent, the runner (this process, whose handler the runner owns).
    kill_runner = "import os, signal, time\nos.kill(os.getppid(), signal.SIGTERM)\ntime.sleep(60)"
    wf, keys = build(
        api,
        [
            {"name": "trigger", "command": py(kill_runner)},
            {"name": "later", "command": py("pass"), "blocked_by": ["trigger"]},
        ],
    )
    _runner, outcome = run_runner(api, wf, tmp_path)
    assert outcome.reason == "signal"
    jobs = jobs_by_name(api, wf)
    assert jobs["trigger"]["status"] == "terminated"
    assert jobs["later"]["status"] in ("blocked", "canceled")  # never ran
    assert keys["later"] not in results_by_key(api, wf)
    assert results_by_key(api, wf)[keys["trigger"]]["status"] == "terminated"
    assert api.get(f"/workflows/{wf}/compute_nodes")["items"][0]["is_active"] is False


def test_workflow_cancel_kills_running_jobs(api: Client, tmp_path: Path) -> None:
    # The job cancels its own workflow through the API, then keeps running.
    cancel = (
        "import os, time, urllib.request\n"
        "url = os.environ['HPCFLOW_URL'] + '/workflows/' + os.environ['TORC_WORKFLOW_KEY']"
        " + '/cancel'\n"
        "urllib.request.urlopen(urllib.request.Request(url, data=b'{}', method='PUT',"
        " headers={'Content-Type': 'application/json'})).read()\n"
        "time.sleep(60)"
    )
    wf, keys = build(
        api,
        [
            {"name": "victim", "command": py(cancel)},
            {"name": "sleeper", "command": py("import time; time.sleep(60)")},
            {"name": "next", "command": py("pass"), "blocked_by": ["victim"]},
        ],
    )
    began = time.monotonic()
    _runner, outcome = run_runner(api, wf, tmp_path)
    assert outcome.reason == "canceled"
    assert time.monotonic() - began < 20
    jobs = jobs_by_name(api, wf)
    assert {n: j["status"] for n, j in jobs.items()} == dict.fromkeys(keys, "canceled")
    results = results_by_key(api, wf)
    assert results[keys["victim"]]["status"] == results[keys["sleeper"]]["status"] == "canceled"
    assert outcome.counts["canceled"] == 2


def test_memory_limit_kills_and_records_out_of_memory(api: Client, tmp_path: Path) -> None:
    hog = py("import time; x = b'a' * (150 * 1024 * 1024); time.sleep(60)")
    wf, keys = build(
        api,
        [{"name": "hog", "command": hog, "memory": "50m"}],
        config={"memory_limit_tolerance": 0.2, "auto_escalate": False},
    )
    began = time.monotonic()
    _runner, outcome = run_runner(api, wf, tmp_path, stats_interval=0.05)
    assert time.monotonic() - began < 30
    result = results_by_key(api, wf)[keys["hog"]]
    assert result["return_code"] == 137 and result["status"] == "done"
    [event] = [
        e for e in api.iter_items(f"/workflows/{wf}/events") if e.get("type") == "out_of_memory"
    ]
    assert event["job_key"] == keys["hog"] and event["max_rss"] > 60 * 1024**2
    assert outcome.counts["failed"] == 1


def test_runtime_limit_kills_and_records_timeout(api: Client, tmp_path: Path) -> None:
    wf, keys = build(
        api,
        [{"name": "slow", "command": py("import time; time.sleep(60)"), "runtime": "P0DT1S"}],
        config={"runtime_limit_factor": 1.0, "auto_escalate": False},
    )
    began = time.monotonic()
    _runner, _outcome = run_runner(api, wf, tmp_path)
    took = time.monotonic() - began
    assert 0.9 < took < 20
    assert results_by_key(api, wf)[keys["slow"]]["return_code"] == 124
    assert [
        e["type"] for e in api.iter_items(f"/workflows/{wf}/events") if e.get("type") == "timeout"
    ] == ["timeout"]
