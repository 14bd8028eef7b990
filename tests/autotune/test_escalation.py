"""Escalation at the engine: memory and runtime kills retry with 1.5x, capped, up to max_retries."""

from __future__ import annotations

from typing import Any

from tests.autoscale.helpers import events, slurm_config
from tests.autotune.helpers import GIB, configure, finish, job_rows
from tests.engine.helpers import Api


def _kill(api: Api, node: str, name: str, code: int) -> dict[str, Any]:
    """Claim the named job (it must be the only ready one) and report it killed."""
    [job] = api.claim()
    assert job["name"] == name
    return finish(api, node, job, code=code)


def _escalations(app: Any, workflow: str) -> list[dict[str, Any]]:
    return [
        e for e in events(app, workflow, "job") if e["type"] in ("escalated", "escalation_stopped")
    ]


def test_memory_escalates_up_to_the_largest_node_then_fails(
    app: Any, client: Any, workflow: str
) -> None:
    api = Api(client, workflow)
    configure(api, max_retries=5)
    slurm_config(api, mem="32g")
    slurm_config(api, mem="20g", name="small")
    hog = api.job("hog", resource_requirements=api.rr("r", memory="10g"))
    api.job("after", blocked_by=[hog["_id"]])
    api.initialize()
    node = api.node()
    sizes = []
    for _ in range(3):
        done = _kill(api, node, "hog", 137)
        assert done["status"] == "ready"  # back through the transition table, not failed
        sizes.append(done["internal"]["memory_bytes"])
    assert sizes == [15 * GIB, int(22.5 * GIB), 32 * GIB]  # the last one capped at 32g
    assert api.statuses()["after"] == "blocked"
    done = _kill(api, node, "hog", 137)
    assert done["status"] == "done" and done["error_category"] == "OUT_OF_MEMORY"
    assert api.statuses()["after"] == "canceled"  # a normal failure from here on
    evs = _escalations(app, workflow)
    assert [e["type"] for e in evs] == ["escalated"] * 3 + ["escalation_stopped"]
    assert [(e["old"], e["new"], e["attempt"]) for e in evs[:3]] == [
        (10 * GIB, 15 * GIB, 1),
        (15 * GIB, 22.5 * GIB, 2),
        (22.5 * GIB, 32 * GIB, 3),
    ]
    assert evs[2]["cap"] == 32 * GIB and "slurm_schedulers" in evs[3]["reason"]
    assert "largest node" in evs[3]["reason"]
    results = api.get("/results", job_key=hog["_key"])["items"]
    assert [r["return_code"] for r in results] == [137] * 4  # every attempt stays recorded
    assert job_rows(app, workflow)["hog"].num_escalations == 3
    assert job_rows(app, workflow)["hog"].num_retries == 0  # SYSTEM retries are apart


def test_runtime_escalation_stops_at_max_retries(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    configure(api, max_retries=2)
    api.job("slow", resource_requirements=api.rr("r", runtime="P0DT100S"))
    api.initialize()
    node = api.node()
    assert _kill(api, node, "slow", 124)["internal"]["runtime_seconds"] == 150
    assert _kill(api, node, "slow", 124)["internal"]["runtime_seconds"] == 225
    done = _kill(api, node, "slow", 124)
    assert done["status"] == "done" and done["error_category"] == "TIMEOUT"
    *_, stop = _escalations(app, workflow)
    assert stop["type"] == "escalation_stopped" and "max_retries (2)" in stop["reason"]
    assert stop["num_escalations"] == 2


def test_runtime_is_capped_by_the_walltime(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api, walltime="00:02:00")
    api.job("slow", resource_requirements=api.rr("r", runtime="P0DT100S"), scheduler=cfg)
    api.initialize()
    node = api.node()
    [job] = api.claim(
        {"num_cpus": 8, "memory_gb": 32, "num_gpus": 0, "num_nodes": 1, "scheduler_config_id": cfg}
    )
    assert finish(api, node, job, code=124)["internal"]["runtime_seconds"] == 120
    [job] = api.claim(
        {"num_cpus": 8, "memory_gb": 32, "num_gpus": 0, "num_nodes": 1, "scheduler_config_id": cfg}
    )
    done = finish(api, node, job, code=124)
    assert done["status"] == "done"
    *_, stop = _escalations(app, workflow)
    assert "longest walltime" in stop["reason"] and cfg in stop["reason"]


def test_escalation_can_be_switched_off(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    configure(api, auto_escalate=False)
    api.job("hog", resource_requirements=api.rr("r", memory="1g"))
    api.job("fine")
    api.initialize()
    node = api.node()
    for job in api.claim():
        code = 137 if job["name"] == "hog" else 0
        assert finish(api, node, job, code=code)["status"] == "done"
    assert _escalations(app, workflow) == []
    assert job_rows(app, workflow)["hog"].error_category == "OUT_OF_MEMORY"
    assert job_rows(app, workflow)["fine"].error_category is None
