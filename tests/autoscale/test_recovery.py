"""Node leases: stale or ended nodes are lost; their jobs retry or fail with SYSTEM."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.autoscale.helpers import (
    NOW,
    FakeSubmitter,
    events,
    job_row,
    results,
    run_tick,
    slurm_config,
)
from tests.engine.helpers import BIG_NODE, Api


def _node(api: Api, heartbeat: float | None, **extra: Any) -> str:
    start = datetime.fromtimestamp(extra.pop("start", NOW - 60), UTC).isoformat()
    body = {
        "hostname": "n",
        "pid": 4242,
        "start_time": start,
        "resources": {**BIG_NODE, **extra.pop("resources", {})},
        "last_heartbeat": heartbeat,
        **extra,
    }
    return str(api.post("/compute_nodes", body)["_key"])


def _max_retries(api: Api, n: int) -> None:
    api.put("/config", {"max_retries": n})


def _node_active(api: Api, key: str) -> bool:
    return bool(api.get(f"/compute_nodes/{key}")["is_active"])


def test_stale_heartbeat_retries_then_fails_with_system(
    app: Any, client: Any, workflow: str
) -> None:
    api = Api(client, workflow)
    _max_retries(api, 1)
    a = api.job("a")
    b = api.job("b", blocked_by=[a["_id"]])
    c = api.job("c")
    api.initialize()
    node = _node(api, NOW - 10)
    claimed = {j["name"]: j for j in api.claim(compute_node_key=node)}
    assert set(claimed) == {"a", "c"}
    api.start(claimed["a"], node)
    fake = FakeSubmitter()
    # Within the lease (3 x 30 s): nothing happens.
    assert run_tick(app, {"slurm": fake}, now=NOW + 60).lost_nodes == []
    report = run_tick(app, {"slurm": fake}, now=NOW + 200)
    assert report.lost_nodes == [int(node)]
    assert sorted(report.retried_jobs) == sorted([int(a["_key"]), int(c["_key"])])
    assert not _node_active(api, node)
    for job in (a, c):
        row = job_row(app, job["_key"])
        assert (row.status, row.num_retries, row.compute_node_id) == ("ready", 1, None)
    # The run that had started shows up in the results; the merely claimed one does not.
    assert [(r.status, r.return_code) for r in results(app, a["_key"])] == [("terminated", -1)]
    assert results(app, c["_key"]) == []
    lost = events(app, workflow, "compute_node")
    assert len(lost) == 1 and "no heartbeat for 210 s (lease 90 s)" in lost[0]["message"]
    retries = [e for e in events(app, workflow, "job") if e.get("type") == "retry"]
    assert len(retries) == 2 and all("retry 1" in e["message"] for e in retries)

    # Second loss: the retry budget (1) is spent, so both fail with error category SYSTEM.
    node2 = _node(api, NOW + 190)
    claimed = {j["name"]: j for j in api.claim(compute_node_key=node2)}
    api.start(claimed["a"], node2)
    report = run_tick(app, {"slurm": fake}, now=NOW + 400)
    assert sorted(report.failed_jobs) == sorted([int(a["_key"]), int(c["_key"])])
    for job in (a, c):
        row = job_row(app, job["_key"])
        assert (row.status, row.error_category) == ("done", "SYSTEM")
    assert job_row(app, b["_key"]).status == "canceled"
    assert [(r.status, r.return_code) for r in results(app, a["_key"])] == [
        ("terminated", -1),
        ("done", -1),
    ]
    failed = [e for e in events(app, workflow, "job") if e.get("type") == "failed"]
    assert len(failed) == 2 and all(e["error_category"] == "SYSTEM" for e in failed)
    assert api.get("/is_complete")["is_complete"] is True


def test_node_without_heartbeat_is_never_stale(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    api.job("a")
    api.initialize()
    node = _node(api, None)  # torc's own runner does not heartbeat
    api.claim(compute_node_key=node)
    assert run_tick(app, {}, now=NOW + 10_000).lost_nodes == []
    assert _node_active(api, node)


@pytest.mark.parametrize(("state", "counts"), [("canceled", False), ("failed", True)])
def test_ended_allocation(app: Any, client: Any, workflow: str, state: str, counts: bool) -> None:
    api = Api(client, workflow)
    _max_retries(api, 0)
    cfg = slurm_config(api, max_nodes=1, max_queued=1)
    job = api.job("x", scheduler=cfg)
    api.initialize()
    fake = FakeSubmitter()
    assert run_tick(app, {"slurm": fake}).launched == {cfg: 1}
    node = _node(
        api,
        NOW,
        scheduler={"type": "slurm", "job_id": "1001"},
        resources={"scheduler_config_id": cfg},
    )
    fake.states["1001"] = "running"
    claimed = api.claim({**BIG_NODE, "scheduler_config_id": cfg}, compute_node_key=node)
    api.start(claimed[0], node)
    assert run_tick(app, {"slurm": fake}, now=NOW + 1).lost_nodes == []
    fake.states["1001"] = state  # scancel, or the node died; the heartbeat is still fresh
    report = run_tick(app, {"slurm": fake}, now=NOW + 2)
    assert report.lost_nodes == [int(node)]
    row = job_row(app, job["_key"])
    if counts:  # no retries allowed: the job fails
        assert (row.status, row.error_category) == ("done", "SYSTEM")
    else:  # a cancel never uses a retry, even with max_retries 0; a new node is launched
        assert (row.status, row.num_retries) == ("ready", 0)
        assert report.launched == {cfg: 1}
    assert f"allocation 1001 ended ({state})" in events(app, workflow, "compute_node")[0]["message"]


def test_walltime_end_uses_no_retry(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    _max_retries(api, 0)
    job = api.job("a")
    api.initialize()
    node = _node(api, NOW - 1000, start=NOW - 4000, resources={"time_limit": "P0DT1H"})
    claimed = api.claim(compute_node_key=node)
    api.start(claimed[0], node)
    report = run_tick(app, {}, now=NOW)
    assert report.lost_nodes == [int(node)] and report.failed_jobs == []
    row = job_row(app, job["_key"])
    assert (row.status, row.num_retries) == ("ready", 0)
    assert "walltime ended" in events(app, workflow, "compute_node")[0]["message"]


def test_node_that_beats_after_the_tick_read_it_is_not_lost(
    app: Any, client: Any, workflow: str
) -> None:
    from hpcflow.autoscale.recovery import Loss, declare_lost
    from tests.autoscale.helpers import sessions

    api = Api(client, workflow)
    api.job("a")
    api.initialize()
    node = _node(api, NOW)  # beat at NOW, after the tick saw it silent at NOW - 100
    api.claim(compute_node_key=node)
    with sessions(app)() as session:
        loss = Loss(int(node), "no heartbeat for 100 s", True, silent_since=NOW - 90)
        assert declare_lost(session, loss, NOW + 1) == ([], [], False)
        session.commit()
    assert _node_active(api, node)
