"""A canceled allocation whose runner already reported its stopped jobs: they run again.

The runner of a canceled allocation gets SIGTERM and reports its jobs `terminated` (or `done`
143 when a job died of the same signal first), releasing or canceling their dependents, then
leaves. The tick that sees the cancel gives those jobs back and re-blocks their downstream.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.autoscale.helpers import (
    NOW,
    FakeSubmitter,
    events,
    job_row,
    run_tick,
    slurm_config,
)
from tests.engine.helpers import BIG_NODE, Api


def _finish(api: Api, job: dict[str, Any], node: str, status: str, code: int, when: float) -> None:
    """complete_job as the runner reports it, finished at `when`."""
    run = api.run_id()
    result = {
        "job_key": job["_key"],
        "run_id": run,
        "return_code": code,
        "exec_time_minutes": 0.1,
        "status": status,
        "completion_time": datetime.fromtimestamp(when, UTC).isoformat(),
    }
    api.post(f"/jobs/{job['_key']}/complete_job/{status}/{job['_rev']}/{run}/{node}", result)


@pytest.mark.parametrize("state", ["canceled", "completed"])
def test_jobs_stopped_by_a_cancel_run_again(
    app: Any, client: Any, workflow: str, state: str
) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api, max_nodes=1, max_queued=1)
    jobs = {name: api.job(name) for name in ("term", "sig", "old", "ok")}
    term_dep = api.job(
        "term_dep", blocked_by=[jobs["term"]["_id"]], cancel_on_blocking_job_failure=False
    )
    sig_dep = api.job("sig_dep", blocked_by=[jobs["sig"]["_id"]])
    api.initialize()
    fake = FakeSubmitter()
    assert run_tick(app, {"slurm": fake}).launched == {cfg: 1}
    start = datetime.fromtimestamp(NOW, UTC).isoformat()
    node = api.post(
        "/compute_nodes",
        {
            "hostname": "n",
            "pid": 7,
            "start_time": start,
            "last_heartbeat": NOW,
            "scheduler": {"type": "slurm", "job_id": "1001"},
            "resources": {**BIG_NODE, "scheduler_config_id": cfg},
        },
    )
    fake.states["1001"] = "running"
    claimed = {
        j["name"]: j
        for j in api.claim({**BIG_NODE, "scheduler_config_id": cfg}, compute_node_key=node["_key"])
    }
    assert set(claimed) == set(jobs)
    for name, job in claimed.items():
        claimed[name] = api.start(job, node["_key"])
    key = node["_key"]
    # Long before the end a job was terminated on its own; at the end the runner was stopped.
    _finish(api, claimed["old"], key, "terminated", 143, NOW - 1000)
    _finish(api, claimed["ok"], key, "done", 0, NOW + 1)
    _finish(api, claimed["term"], key, "terminated", 143, NOW + 2)
    _finish(api, claimed["sig"], key, "done", 143, NOW + 2)
    assert api.statuses()["sig_dep"] == "canceled"  # the "failure" canceled its dependent
    assert api.statuses()["term_dep"] == "ready"  # the termination released its dependent
    doc = api.get(f"/compute_nodes/{key}")
    api.put(f"/compute_nodes/{key}", {**doc, "is_active": False, "last_heartbeat": NOW + 3})
    fake.states["1001"] = state
    report = run_tick(app, {"slurm": fake}, now=NOW + 4)
    if state == "completed":  # the runner left on its own: what it reported stands
        assert report.lost_nodes == [] and report.retried_jobs == []
        assert api.statuses()["term"] == "terminated"
        return
    assert report.lost_nodes == [int(key)]
    assert sorted(report.retried_jobs) == sorted(int(claimed[n]["_key"]) for n in ("term", "sig"))
    assert api.statuses() == {
        "term": "ready",
        "sig": "ready",
        "old": "terminated",
        "ok": "done",
        "term_dep": "blocked",
        "sig_dep": "blocked",
    }
    for name in ("term", "sig"):
        row = job_row(app, claimed[name]["_key"])
        assert (row.num_retries, row.compute_node_id) == (0, None)
    said = events(app, workflow, "job")
    retried = {e["job_key"] for e in said if e.get("type") == "retry"}
    assert retried == {claimed["term"]["_key"], claimed["sig"]["_key"]}
    assert [e["type"] for e in events(app, workflow, "compute_node")] == ["lost"]
    # The freed node slot is filled at once; the next tick changes nothing more.
    assert report.launched == {cfg: 1}
    again = run_tick(app, {"slurm": fake}, now=NOW + 5)
    assert again.lost_nodes == [] and again.retried_jobs == []
    assert job_row(app, term_dep["_key"]).blocked_count == 1
    assert job_row(app, sig_dep["_key"]).blocked_count == 1
