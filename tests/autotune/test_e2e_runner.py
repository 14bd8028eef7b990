"""End to end with real runner processes and a real server: torc's auto-tune and escalation."""

from __future__ import annotations

import math
from pathlib import Path

from hpcflow.client import Client
from hpcflow.units import parse_duration, parse_memory
from tests.autotune.workload import Group, build
from tests.runner.conftest import run_runner

MARGIN = 1.2


def test_torc_auto_tune_sets_each_group_between_peak_and_peak_times_margin(
    api: Client, tmp_path: Path
) -> None:
    groups = [
        Group("small", 2, 20, 0.5, "1g", "P0DT10M"),
        Group("mid", 2, 50, 0.8, "1g", "P0DT10M"),
        Group("big", 2, 90, 0.6, "2g", "P0DT20M"),
    ]
    # A limit 20 % above the tuned numbers proves the second round really fits in them.
    wf, rrs = build(api, groups, {"memory_limit_tolerance": 0.2, "auto_escalate": False})
    base = f"/workflows/{wf}"
    keys = api.post(f"{base}/auto_tune_resource_requirements")["job_keys"]
    assert len(keys) == 3
    _runner, outcome = run_runner(api, wf, tmp_path, stats_interval=0.05)
    assert outcome.reason == "complete" and outcome.counts == {"started": 3, "done": 3}
    out = api.post(f"{base}/process_auto_tune_resource_requirements_results")
    assert sorted(out["updated_job_keys"]) == sorted(keys) and out["num_enabled_jobs"] == 3
    by_rr = {}
    for key in keys:
        job = api.get(f"{base}/jobs/{key}")
        [stats] = api.get(f"{base}/job_process_stats", job_key=key)["items"]
        [result] = api.get(f"{base}/results", job_key=key)["items"]
        by_rr[job["resource_requirements"]] = (stats, result)
    for g in groups:
        stats, result = by_rr[rrs[g.name]]
        doc = api.get(f"{base}/resource_requirements/{rrs[g.name].split('/')[1]}")
        peak = stats["max_rss"]
        assert peak > g.mib * 1024**2  # the job really held its memory
        assert peak <= parse_memory(doc["memory"]) <= peak * MARGIN, (g.name, doc, peak)
        seconds = result["exec_time_minutes"] * 60
        assert seconds >= g.seconds
        assert seconds <= parse_duration(doc["runtime"]) <= seconds * MARGIN, (g.name, doc)
        assert doc["num_cpus"] == max(1, math.ceil(stats["max_cpu_percent"] / 100 - 0.25))
    events = [e for e in api.iter_items(f"{base}/events", category="resource_requirements")]
    assert {e["name"] for e in events} == {"small", "mid", "big"}
    assert all(e["num_samples"] == 1 and e["old"]["memory"] in ("1g", "2g") for e in events)
    api.post(f"{base}/initialize_jobs", only_uninitialized=True)
    _runner, outcome = run_runner(api, wf, tmp_path, stats_interval=0.05)
    assert outcome.reason == "complete" and outcome.counts == {"started": 3, "done": 3}
    codes = [r["return_code"] for r in api.iter_items(f"{base}/results")]
    assert codes == [0] * 6


def test_a_job_needing_twice_its_memory_completes_after_escalating(
    api: Client, tmp_path: Path
) -> None:
    # ~80 MiB in use (70 held plus the interpreter) against 40m asked; killed above 1.2x.
    wf, rrs = build(
        api, [Group("hog", 1, 70, 0.8, "40m", "P0DT10M")], {"memory_limit_tolerance": 0.2}
    )
    base = f"/workflows/{wf}"
    _runner, outcome = run_runner(api, wf, tmp_path, stats_interval=0.05)
    assert outcome.reason == "complete"
    [job] = list(api.iter_items(f"{base}/jobs"))
    assert job["status"] == "done"
    results = list(api.iter_items(f"{base}/results"))
    assert results[-1]["return_code"] == 0
    assert 2 <= len(results) <= 3 and {r["return_code"] for r in results[:-1]} == {137}
    escalated = [
        e for e in api.iter_items(f"{base}/events", category="job") if e.get("type") == "escalated"
    ]
    assert len(escalated) == len(results) - 1
    old = parse_memory("40m")
    for n, e in enumerate(escalated, start=1):
        assert (e["old"], e["new"], e["attempt"]) == (old, math.ceil(old * 1.5 / 2**20) * 2**20, n)
        old = e["new"]
    assert job["internal"]["memory_bytes"] == old
    # The runner's own kill events, one per killed attempt.
    kills = [
        e
        for e in api.iter_items(f"{base}/events", category="job")
        if e.get("type") == "out_of_memory"
    ]
    assert len(kills) == len(results) - 1
    assert rrs["hog"] == job["resource_requirements"]
