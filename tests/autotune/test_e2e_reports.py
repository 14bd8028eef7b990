"""A bench-like workload run twice with tuning between: the reports show the waste dropping,
and their numbers match what the stats and results documents say (computed here anew)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpcflow.cli.reports import reports_group
from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from tests.autotune.workload import Group, build, restart
from tests.runner.conftest import run_runner

GIB = 1024**3
GROUPS = [
    Group("over_a", 4, 20, 0.5, "120m", "P0DT2S"),  # ~4x memory, ~3x runtime
    Group("over_b", 4, 40, 0.4, "200m", "P0DT1.5S"),
    Group("under", 4, 60, 0.4, "35m", "P0DT2S"),
]  # half the memory it needs


def rank(values: list[float], q: float) -> float:
    """Nearest-rank percentile, written out again here on purpose."""
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


def expected(api: Client, wf: str, run_id: int) -> dict[str, dict[str, Any]]:
    """Per group, from the documents: observed use of successful runs and the hours of all."""
    base = f"/workflows/{wf}"
    jobs = {j["_key"]: j for j in api.iter_items(f"{base}/jobs")}
    names = {g["_id"]: g["name"] for g in api.iter_items(f"{base}/resource_requirements")}
    results = defaultdict(list)
    for r in api.iter_items(f"{base}/results", run_id=run_id):
        results[r["job_key"]].append(r)
    out: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(list))
    for s in api.iter_items(f"{base}/job_process_stats", run_id=run_id):
        # The attempt a stats document describes: the last result completed before it.
        attempt = [r for r in results[s["job_key"]] if r["completion_time"] <= s["timestamp"]][-1]
        g = out[names[jobs[s["job_key"]]["resource_requirements"]]]
        hours = attempt["exec_time_minutes"] / 60
        g["used_core_hours"].append(s["avg_cpu_percent"] / 100 * hours)
        g["used_gb_hours"].append(s["max_rss"] / GIB * hours)
        if attempt["return_code"] == 0:
            internal = jobs[s["job_key"]]["internal"]
            g["memory"].append(s["max_rss"])
            g["cpu"].append(s["max_cpu_percent"])
            g["runtime"].append(attempt["exec_time_minutes"] * 60)
            g["asked_memory"].append(internal["memory_bytes"])
            g["asked_cpus_hours"].append(internal["num_cpus"] * hours)
            g["asked_gb_hours"].append(internal["memory_bytes"] / GIB * hours)
    for name, rs in ((names[jobs[k]["resource_requirements"]], rs) for k, rs in results.items()):
        out[name]["killed"].extend(r for r in rs if r["return_code"] == 137)
        out[name]["runs"].extend(rs)
    return out


def check(report: dict[str, Any], want: dict[str, dict[str, Any]], exact_asks: bool) -> None:
    """The report's numbers against the independently computed ones."""
    for g in report["groups"]:
        w = want[g["name"]]
        assert g["num_runs"] == len(w["runs"]) and g["num_killed_memory"] == len(w["killed"])
        for key, values in (
            ("memory_bytes", w["memory"]),
            ("cpu_percent", w["cpu"]),
            ("runtime_seconds", w["runtime"]),
        ):
            obs = g["observed"][key]
            assert obs["max"] == pytest.approx(max(values))
            assert obs["p50"] == pytest.approx(rank(values, 0.5))
            assert obs["p95"] == pytest.approx(rank(values, 0.95))
        assert g["core_hours"]["used"] == pytest.approx(sum(w["used_core_hours"]))
        assert g["gb_hours"]["used"] == pytest.approx(sum(w["used_gb_hours"]))
        if exact_asks:  # every run asked what its job asks now (no escalation in between)
            assert g["ratio"]["memory"] == pytest.approx(sum(w["asked_memory"]) / sum(w["memory"]))
            assert g["core_hours"]["requested"] == pytest.approx(sum(w["asked_cpus_hours"]))
            assert g["gb_hours"]["requested"] == pytest.approx(sum(w["asked_gb_hours"]))
            assert g["gb_hours"]["wasted"] == pytest.approx(
                sum(w["asked_gb_hours"]) - sum(w["used_gb_hours"])
            )


def test_tuning_cuts_the_waste_and_the_reports_add_up(
    api: Client, server: EmbeddedServer, tmp_path: Path
) -> None:
    wf, _rrs = build(api, GROUPS, {"auto_tune_mode": "suggest", "memory_limit_tolerance": 0.2})
    base = f"/workflows/{wf}"
    _runner, outcome = run_runner(api, wf, tmp_path, cpus=2, stats_interval=0.05)
    assert outcome.reason == "complete"
    first = api.get(f"{base}/reports/utilization", run_id=0)
    check(first, expected(api, wf, 0), exact_asks=False)
    by_name = {g["name"]: g for g in first["groups"]}
    assert by_name["under"]["num_killed_memory"] >= 4  # each under job was killed at least once
    applied = api.post(f"{base}/auto_tune/apply")["applied"]
    assert {a["name"] for a in applied} == {"over_a", "over_b", "under"}
    restart(api, wf)
    _runner, outcome = run_runner(api, wf, tmp_path, cpus=2, stats_interval=0.05)
    assert outcome.reason == "complete"
    second = api.get(f"{base}/reports/utilization")
    assert second["run_id"] == 1
    check(second, expected(api, wf, 1), exact_asks=True)
    assert second["totals"]["gb_hours"]["wasted"] < first["totals"]["gb_hours"]["wasted"]
    for g in second["groups"]:
        was = {x["name"]: x for x in first["groups"]}[g["name"]]
        assert g["num_killed_memory"] == 0
        assert g["ratio"]["memory"] <= 1.3
        if g["name"] != "under":
            assert g["ratio"]["runtime"] < was["ratio"]["runtime"]
            assert g["gb_hours"]["wasted"] < was["gb_hours"]["wasted"]
    # The CLI prints the same report and draws it.
    plot = tmp_path / "report.html"
    cli = CliRunner()
    done = cli.invoke(
        reports_group, ["utilization", wf, "--url", server.url, "-o", "json", "--plot", str(plot)]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == second
    html = plot.read_text()
    assert "plotly" in html.lower() and "under0#1" in html and "requested vs used" in html
    done = cli.invoke(
        reports_group, ["results", wf, "--url", server.url, "-o", "json", "--run-id", "0"]
    )
    assert done.exit_code == 0, done.output
    rows = json.loads(done.output)
    assert len(rows) == first["totals"]["num_runs"]
    under0 = [r for r in rows if r["job_name"] == "under0"]
    assert [r["attempt"] for r in under0] == list(range(1, len(under0) + 1))
    assert [r["return_code"] for r in under0][-1] == 0
    assert {r["return_code"] for r in under0[:-1]} == {137}
    assert all(r["max_rss"] and r["hostname"] for r in rows)
    table = CliRunner(env={"COLUMNS": "250"}).invoke(
        reports_group, ["utilization", wf, "--url", server.url]
    )
    assert table.exit_code == 0 and "over_a" in table.output and "gb_h_wasted" in table.output
