"""Property test: random DAGs, random completion orders and failures, checked against a model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcflow.app import create_app
from hpcflow.config import Settings
from tests.engine.helpers import FINISHED, Api

COMPLETE = FINISHED | {"disabled"}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One SQLite-backed app for all examples (each example gets its own workflow)."""
    path: Path = tmp_path_factory.mktemp("prop") / "prop.db"
    yield create_app(Settings(database_url=f"sqlite:///{path}")).test_client()


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """Up to 8 jobs; edges only from lower to higher index, so the graph is acyclic."""
    n = draw(st.integers(1, 8))
    edges = {(i, j) for j in range(n) for i in range(j) if draw(st.booleans())}
    flags = [draw(st.booleans()) for _ in range(n)]
    fail = {i for i in range(n) if draw(st.integers(0, 3)) == 0}
    return {"n": n, "edges": edges, "flags": flags, "fail": fail}


def expected_canceled(dag: dict[str, Any]) -> set[int]:
    """Jobs that depend, through cancel-on-failure jobs only, on a job that ran and failed."""
    canceled: set[int] = set()
    failed: set[int] = set()
    for v in range(dag["n"]):  # index order is a topological order
        blockers = {u for u, w in dag["edges"] if w == v}
        if dag["flags"][v] and blockers & (canceled | failed):
            canceled.add(v)
        elif v in dag["fail"]:
            failed.add(v)
    return canceled


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag=dags(), data=st.data())
def test_random_workflows_follow_the_model(
    http: Any, dag: dict[str, Any], data: st.DataObject
) -> None:
    wf = http.post("/workflows", json={"user": "prop"}).json["_key"]
    api = Api(http, wf)
    ids: list[str] = []
    for v in range(dag["n"]):
        blockers = [ids[u] for u, w in sorted(dag["edges"]) if w == v]
        job = api.job(f"j{v}", blocked_by=blockers, cancel_on_blocking_job_failure=dag["flags"][v])
        ids.append(job["_id"])
    index = {ref.split("/")[1]: v for v, ref in enumerate(ids)}
    api.initialize()
    node = api.node()
    running: list[dict[str, Any]] = []
    ran: list[int] = []
    while True:
        statuses = {index[j["_key"]]: j["status"] for j in api.get("/jobs")["items"]}
        complete = api.get("/is_complete")["is_complete"]
        assert complete == all(s in COMPLETE for s in statuses.values())
        claimable = any(s == "ready" for s in statuses.values())
        if not running and not claimable:
            break
        if running and (not claimable or data.draw(st.booleans(), label="complete")):
            job = running.pop(data.draw(st.integers(0, len(running) - 1), label="which"))
            v = index[job["_key"]]
            api.complete(job, node, return_code=1 if v in dag["fail"] else 0)
            continue
        [job] = api.post("/prepare_next_jobs_for_submission")["jobs"]
        v = index[job["_key"]]
        for u, w in dag["edges"]:
            if w == v:
                assert statuses[u] in FINISHED, f"j{v} claimed while blocker j{u} is {statuses[u]}"
        running.append(api.start(job, node))
        ran.append(v)
    statuses = {index[j["_key"]]: j["status"] for j in api.get("/jobs")["items"]}
    canceled = {v for v, s in statuses.items() if s == "canceled"}
    assert canceled == expected_canceled(dag)
    assert sorted(ran) == sorted(set(range(dag["n"])) - canceled), "each other job ran once"
    assert api.get("/is_complete")["is_complete"] is True
