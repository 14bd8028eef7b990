"""The transition table, and 409s (stale rev, wrong run_id, illegal change) that write nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from hpcflow.engine import states
from hpcflow.errors import Conflict
from tests.conftest import row_counts
from tests.engine.helpers import Api


def snapshot(engine: Engine) -> tuple[Any, ...]:
    """Row counts plus every job's status, revision and counter, and the workflow statuses."""
    with engine.connect() as conn:
        jobs = conn.execute(
            text("SELECT id, status, rev, blocked_count, run_id FROM jobs ORDER BY id")
        ).all()
        wfs = conn.execute(
            text("SELECT workflow_id, rev, run_id, is_canceled FROM workflow_statuses")
        ).all()
    return row_counts(engine), [tuple(r) for r in jobs], [tuple(r) for r in wfs]


def test_table_is_closed_and_names_both_states() -> None:
    assert set(states.TRANSITIONS) == set(states.STATUSES)
    for targets in states.TRANSITIONS.values():
        assert targets <= set(states.STATUSES)
    assert all(
        states.is_legal(s, states.UNINITIALIZED)
        for s in states.STATUSES
        if s != states.UNINITIALIZED
    )
    with pytest.raises(Conflict, match="done -> ready"):
        states.check("done", "ready", 7)
    assert states.sources(states.SUBMITTED) == [states.SUBMITTED_PENDING]


@pytest.fixture
def started(client: Any, workflow: str) -> tuple[Api, str, dict[str, Any]]:
    """A two-job chain whose first job is claimed and started."""
    api = Api(client, workflow)
    a = api.job("a")
    api.job("b", blocked_by=[a["_id"]])
    api.initialize()
    node = api.node()
    [job] = api.claim()
    return api, node, api.start(job, node)


def test_stale_rev_wrong_run_id_and_illegal_change_are_409(
    started: tuple[Api, str, dict[str, Any]], backend: Engine
) -> None:
    api, node, job = started
    before = snapshot(backend)
    stale = {**job, "_rev": str(int(job["_rev"]) - 1)}
    out = api.complete(stale, node, expect=409)
    assert "stale _rev" in out["errorMessage"]
    out = api.complete(job, node, run_id=5, expect=409)
    assert "run_id 5 is stale" in out["errorMessage"]
    out = api.start(job, node, expect=409)
    assert "submitted -> submitted" in out["errorMessage"]
    out = api.put(f"/jobs/{job['_key']}/manage_status_change/disabled/{job['_rev']}/0", expect=409)
    assert "submitted -> disabled" in out["errorMessage"]
    blocked = api.jobs()["b"]
    out = api.complete(blocked, node, expect=409)
    assert "blocked -> done" in out["errorMessage"]
    assert snapshot(backend) == before


def test_bad_inputs_are_4xx_and_write_nothing(
    started: tuple[Api, str, dict[str, Any]], backend: Engine
) -> None:
    api, node, job = started
    before = snapshot(backend)
    key, rev = job["_key"], job["_rev"]
    api.complete(job, node, status="ready", expect=422)
    api.complete(job, "999", expect=404)
    api.put(f"/jobs/{key}/start_job/{rev}/abc/{node}", expect=400)
    api.put(f"/jobs/{key}/manage_status_change/done/{rev}/0", expect=422)
    api.put(f"/jobs/{key}/manage_status_change/bogus/{rev}/0", expect=422)
    api.put(f"/jobs/999/start_job/1/0/{node}", expect=404)
    wrong = {
        "job_key": "999",
        "run_id": 0,
        "return_code": 0,
        "exec_time_minutes": 1,
        "completion_time": "now",
        "status": "done",
    }
    api.post(f"/jobs/{key}/complete_job/done/{rev}/0/{node}", wrong, expect=422)
    api.post("/prepare_jobs_for_submission", {"num_cpus": 1}, expect=422)
    api.post(
        "/prepare_jobs_for_submission",
        {"num_cpus": 1, "memory_gb": 1, "num_gpus": 0, "num_nodes": 1, "time_limit": "soon"},
        expect=422,
    )
    api.post(
        "/prepare_jobs_for_submission",
        {"num_cpus": 1, "memory_gb": 1, "num_gpus": 0, "num_nodes": 1},
        sort_method="x",
        expect=422,
    )
    assert snapshot(backend) == before


def test_manage_status_change_reset_cascades_and_rerun(
    started: tuple[Api, str, dict[str, Any]],
) -> None:
    api, node, job = started
    done = api.complete(job, node)
    assert api.statuses() == {"a": "done", "b": "ready"}
    api.put(f"/jobs/{done['_key']}/manage_status_change/uninitialized/{done['_rev']}/0")
    assert api.statuses() == {"a": "uninitialized", "b": "uninitialized"}
    api.initialize(only_uninitialized=True)
    assert api.statuses() == {"a": "ready", "b": "blocked"}
    events = api.get("/events", category="job")["items"]
    assert any(e.get("type") == "reset" for e in events)


def test_cancel_and_reset_workflow_status(started: tuple[Api, str, dict[str, Any]]) -> None:
    api, node, job = started
    api.put("/cancel")
    assert api.statuses() == {"a": "canceled", "b": "canceled"}
    assert api.get("/is_complete") == {
        "is_canceled": True,
        "is_complete": True,
        "needs_to_run_completion_script": False,
    }
    assert api.claim() == []
    # The runner reports the job it killed; the job was canceled under it (new rev).
    fresh = api.get(f"/jobs/{job['_key']}")
    out = api.complete(fresh, node, status="canceled", return_code=-15)
    assert out["status"] == "canceled"
    api.post("/reset_status")
    assert api.get("/status")["is_canceled"] is False
    api.post("/reset_job_status")
    assert set(api.statuses().values()) == {"uninitialized"}
    cats = {e.get("type") for e in api.get("/events", category="workflow")["items"]}
    assert {"cancel", "reset_status", "reset_jobs"} <= cats
