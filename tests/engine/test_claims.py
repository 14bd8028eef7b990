"""Claim order, greedy packing, filters, and the demand and scheduling queries."""

from __future__ import annotations

from typing import Any

from tests.engine.helpers import Api


def node(cpus: int, mem: float = 100, gpus: int = 0, **extra: Any) -> dict[str, Any]:
    return {"num_cpus": cpus, "memory_gb": mem, "num_gpus": gpus, "num_nodes": 1, **extra}


def names(jobs: list[dict[str, Any]]) -> list[str]:
    return [j["name"] for j in jobs]


def test_priority_then_sort_method_order(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    gpu = api.rr("gpu", num_gpus=1, runtime="PT1M", memory="1g")
    long = api.rr("long", runtime="PT50M", memory="1g")
    big = api.rr("big", runtime="PT10M", memory="8g")
    mid = api.rr("mid", runtime="PT20M", memory="2g")
    api.job("plain1")
    api.job("big", resource_requirements=big)
    api.job("long", resource_requirements=long)
    api.job("mid", resource_requirements=mid)
    api.job("gpu", resource_requirements=gpu)
    api.job("plain2")
    api.job("urgent", priority=5)
    api.initialize()
    grm = api.post("/prepare_next_jobs_for_submission", limit=7)["jobs"]
    assert names(grm) == ["urgent", "gpu", "long", "mid", "big", "plain1", "plain2"]
    for job in grm:  # give them back
        api.put(f"/jobs/{job['_key']}/manage_status_change/ready/{job['_rev']}/0")
    gmr = api.claim(node(64, gpus=1), sort_method="gpus_memory_runtime")
    assert names(gmr) == ["urgent", "gpu", "big", "mid", "long", "plain1", "plain2"]


def test_greedy_packing_does_not_truncate_candidates(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    three = api.rr("three", num_cpus=3, runtime="PT10M")
    one = api.rr("one", num_cpus=1, runtime="PT1M")
    for i in range(3):
        api.job(f"three{i}", resource_requirements=three)
    api.job("one", resource_requirements=one)
    api.initialize()
    # torc would read only `limit` candidates and return one job; we keep looking.
    assert names(api.claim(node(4), limit=2)) == ["three0", "one"]
    assert names(api.claim(node(5))) == ["three1"]
    assert api.claim(node(2)) == []
    assert names(api.claim(node(3), limit=0)) == []
    assert names(api.post("/prepare_next_jobs_for_submission")["jobs"]) == ["three2"]
    assert api.post("/prepare_next_jobs_for_submission")["jobs"] == []


def test_scheduler_config_filter_and_ready_requirements(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    slurm = api.post("/slurm_schedulers", {"name": "s", "account": "acct"})["_id"]
    rr = api.rr("rr", num_cpus=2, num_gpus=1, num_nodes=2, memory="2g", runtime="PT30M")
    api.job("mine", scheduler=slurm, resource_requirements=rr)
    api.job("any")
    api.initialize()
    total = api.get("/ready_job_requirements")
    assert total == {
        "num_jobs": 2,
        "num_cpus": 3,
        "num_gpus": 1,
        "memory_gb": 2 + 1 / 1024,
        "max_num_nodes": 2,
        "max_runtime": "P0DT30M",
    }
    assert (
        api.get("/ready_job_requirements", scheduler_config_id="local_schedulers/9")["num_jobs"]
        == 1
    )
    assert api.get("/ready_job_requirements", scheduler_config_id=slurm)["num_jobs"] == 2
    worker = node(8, gpus=1, num_nodes=2)
    assert names(api.claim({**worker, "num_nodes": 2})) == ["any"]
    assert names(api.claim({**worker, "num_nodes": 2, "scheduler_config_id": slurm})) == ["mine"]
    empty = api.get("/ready_job_requirements")
    assert empty["num_jobs"] == 0 and empty["max_runtime"] == ""


def test_prepare_jobs_for_scheduling_and_claiming_scheduled(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    params = {
        "num_jobs": 2,
        "scheduler_id": "slurm_schedulers/1",
        "max_parallel_jobs": None,
        "start_one_worker_per_node": False,
    }
    api.job("wants_nodes", schedule_compute_nodes=params)
    api.job("plain")
    api.initialize()
    out = api.post("/prepare_jobs_for_scheduling")
    assert out == {"schedulers": [params]}
    assert api.statuses() == {"wants_nodes": "scheduled", "plain": "ready"}
    assert api.post("/prepare_jobs_for_scheduling") == {"schedulers": []}
    assert sorted(names(api.claim())) == ["plain", "wants_nodes"]


def test_canceled_workflow_hands_out_nothing(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    api.job("a")
    api.initialize()
    api.put("/cancel")
    assert api.post("/prepare_jobs_for_submission", node(4))["jobs"] == []
    assert api.post("/prepare_next_jobs_for_submission")["jobs"] == []
