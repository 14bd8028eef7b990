"""torc-compatible auto-tune: one job per requirements group measures; its peak sets the group."""

from __future__ import annotations

from typing import Any

from tests.engine.helpers import Api, run_to_completion


def test_auto_tune_measures_one_job_per_group(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    small = api.rr("small", num_cpus=1, memory="1g", runtime="PT5M")
    big = api.rr("big", num_cpus=8, memory="32g", runtime="PT2H")
    for i in range(3):
        api.job(f"s{i}", resource_requirements=small)
        api.job(f"b{i}", resource_requirements=big)
    api.job("untuned")
    api.post("/process_auto_tune_resource_requirements_results", expect=409)
    api.initialize()
    keys = api.post("/auto_tune_resource_requirements")["job_keys"]
    jobs = api.jobs()
    assert keys == sorted([jobs["s0"]["_key"], jobs["b0"]["_key"]], key=int)
    assert api.get("/status")["auto_tune_status"] == {"enabled": True, "job_keys": keys}
    assert {n for n, s in api.statuses().items() if s == "disabled"} == {"s1", "s2", "b1", "b2"}
    api.post("/auto_tune_resource_requirements", expect=409)
    api.post("/process_auto_tune_resource_requirements_results", expect=409)  # not run yet
    assert set(run_to_completion(api, api.node())) == {"s0", "b0", "untuned"}
    for name, rss, cpu in (("s0", 300 * 1024**2, 90.0), ("b0", 10 * 1024**3, 350.0)):
        api.post(
            "/job_process_stats",
            {
                "job_key": jobs[name]["_key"],
                "run_id": 0,
                "avg_cpu_percent": cpu / 2,
                "max_cpu_percent": cpu,
                "avg_rss": rss / 2,
                "max_rss": rss,
                "num_samples": 5,
                "timestamp": "2024-01-01T00:00:00",
            },
        )
    out = api.post("/process_auto_tune_resource_requirements_results")
    assert sorted(out["updated_job_keys"], key=int) == keys
    tuned = {r["name"]: r for r in api.get("/resource_requirements")["items"]}
    assert tuned["small"]["memory"] == "360m" and tuned["small"]["num_cpus"] == 1
    assert tuned["big"]["memory"] == "12288m" and tuned["big"]["num_cpus"] == 4
    assert tuned["big"]["runtime"] == "P0DT1M12S"  # 1 minute measured, plus the margin
    assert api.get("/status")["auto_tune_status"]["enabled"] is False
    assert {api.statuses()[n] for n in ("s1", "s2", "b1", "b2")} == {"uninitialized"}
    api.initialize(only_uninitialized=True)
    internal = api.jobs()["b1"]["internal"]
    assert internal["num_cpus"] == 4 and internal["memory_bytes"] == 12 * 1024**3
    assert set(run_to_completion(api, api.node("n2"))) == {"s1", "s2", "b1", "b2"}
    events = api.get("/events", category="resource_requirements")["items"]
    assert {e["name"] for e in events} == {"small", "big"}


def test_auto_tune_needs_process_stats(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    api.job("a", resource_requirements=api.rr("r"))
    api.initialize()
    cfg = api.get("/config")
    stats = {"cpu": True, "memory": True, "process": False}
    api.put("/config", {**cfg, "compute_node_resource_stats": stats})
    out = api.post("/auto_tune_resource_requirements", expect=409)
    assert "process" in out["errorMessage"]
    assert api.statuses() == {"a": "ready"}
