"""Batch operations: start_jobs and complete_jobs (with starts, releases and a claim)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.conftest import row_counts
from tests.engine.helpers import BIG_NODE, Api

ONE_CPU = {"num_cpus": 1, "memory_gb": 1, "num_gpus": 0, "num_nodes": 1}


def result(
    job: dict[str, Any], run_id: int = 0, code: int = 0, status: str = "done"
) -> dict[str, Any]:
    return {
        "job_key": job["_key"],
        "run_id": run_id,
        "return_code": code,
        "exec_time_minutes": 0.5,
        "completion_time": "2024-01-01T00:00:00",
        "status": status,
    }


def done(job: dict[str, Any], rev: str | None = None, code: int = 0) -> dict[str, Any]:
    return {
        "key": job["_key"],
        "rev": rev or job["_rev"],
        "status": "done",
        "result": result(job, code=code),
    }


def batch(api: Api, node: str, expect: int = 200, **body: Any) -> Any:
    return api.post(
        "/complete_jobs", {"run_id": 0, "compute_node_key": node, **body}, expect=expect
    )


def diamond(api: Api) -> dict[str, str]:
    a = api.job("a")["_id"]
    b = api.job("b", blocked_by=[a])["_id"]
    c = api.job("c", blocked_by=[a])["_id"]
    api.job("d", blocked_by=[b, c])
    api.initialize()
    return {n: j["_key"] for n, j in api.jobs().items()}


def test_a_completion_returns_the_work_it_made_ready(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    keys = diamond(api)
    node = api.node()
    [a] = api.claim()
    # Start and complete in one request: the completion names the rev the start named.
    answer = batch(
        api,
        node,
        start=[{"key": a["_key"], "rev": a["_rev"]}],
        jobs=[done(a)],
        claim={"resources": BIG_NODE},
    )
    assert answer["errors"] == []
    assert [s["_key"] for s in answer["started"]] == [keys["a"]]
    assert answer["completed"] == [
        {"_key": keys["a"], "_rev": str(int(a["_rev"]) + 2), "status": "done"}
    ]
    claimed = {j["name"]: j for j in answer["jobs"]}
    assert set(claimed) == {"b", "c"}
    assert all(j["status"] == "submitted_pending" for j in claimed.values())
    answer = batch(
        api,
        node,
        start=[{"key": j["_key"], "rev": j["_rev"]} for j in claimed.values()],
        jobs=[done(j) for j in claimed.values()],
        claim={"resources": BIG_NODE},
    )
    assert [j["name"] for j in answer["jobs"]] == ["d"]
    d = answer["jobs"][0]
    answer = batch(
        api,
        node,
        start=[{"key": d["_key"], "rev": d["_rev"]}],
        jobs=[done(d)],
        claim={"resources": BIG_NODE},
    )
    assert answer["jobs"] == [] and answer["reason"]
    assert set(api.statuses().values()) == {"done"}
    # The same records as the single-job operations leave: a result and a returned edge per
    # job, an executed edge per job, a hash.
    with backend.connect() as conn:

        def count(sql: str) -> int:
            return int(conn.execute(text(sql)).scalar_one())

        assert count("SELECT count(*) FROM results WHERE status = 'done'") == 4
        assert count("SELECT count(*) FROM edges WHERE name = 'returned'") == 4
        assert count("SELECT count(*) FROM edges WHERE name = 'executed'") == 4
        assert count("SELECT count(*) FROM jobs WHERE hash IS NULL") == 0
        assert count("SELECT count(*) FROM jobs WHERE blocked_count != 0") == 0


def test_start_jobs_starts_many_and_reports_stale_items(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    for i in range(3):
        api.job(f"j{i}")
    api.initialize()
    node = api.node()
    jobs = api.claim()
    stale = {"key": jobs[2]["_key"], "rev": str(int(jobs[2]["_rev"]) - 1)}
    body = {
        "run_id": 0,
        "compute_node_key": node,
        "jobs": [{"key": j["_key"], "rev": j["_rev"]} for j in jobs[:2]] + [stale],
    }
    answer = api.put("/start_jobs", body)
    assert [s["status"] for s in answer["started"]] == ["submitted", "submitted"]
    assert [(e["_key"], e["operation"], e["code"]) for e in answer["errors"]] == [
        (jobs[2]["_key"], "start", 409)
    ]
    assert "stale _rev" in answer["errors"][0]["message"]
    statuses = api.statuses()
    assert [statuses[f"j{i}"] for i in range(3)] == ["submitted", "submitted", "submitted_pending"]


def test_a_reset_job_is_skipped_the_rest_are_applied(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    api.job("x")
    api.job("y")
    api.job("after_y", blocked_by=[api.jobs()["y"]["_id"]])
    api.initialize()
    node = api.node()
    started = {j["name"]: api.start(j, node) for j in api.claim()}
    # x is reset while it runs: its rev moves on and the runner's completion is stale.
    x = started["x"]
    api.put(f"/jobs/{x['_key']}/manage_status_change/ready/{x['_rev']}/0")
    answer = batch(api, node, jobs=[done(x), done(started["y"])], claim={"resources": ONE_CPU})
    assert [(e["_key"], e["operation"], e["code"]) for e in answer["errors"]] == [
        (x["_key"], "complete", 409)
    ]
    assert answer["error_counts"] == {"409": 1}
    assert [c["_key"] for c in answer["completed"]] == [started["y"]["_key"]]
    assert {j["name"] for j in answer["jobs"]} <= {"x", "after_y"} and answer["jobs"]
    statuses = api.statuses()
    assert statuses["y"] == "done"
    results = api.get("/results")["items"]
    assert [r["job_key"] for r in results] == [started["y"]["_key"]]


def test_malformed_requests_write_nothing(client: Any, workflow: str, backend: Engine) -> None:
    api = Api(client, workflow)
    api.job("p")
    api.job("q")
    api.initialize()
    node = api.node()
    p, q = (api.start(j, node) for j in api.claim())
    before = row_counts(backend)
    bad_key = {**done(p), "result": result(q)}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"jobs": [done(p), done(p)]}, 422, "twice"),
        ({"jobs": [done(q), bad_key]}, 422, "does not match job"),
        ({"jobs": [done(q), {**done(p), "status": "exploded"}]}, 422, "unknown"),
        ({"jobs": [done(q)], "release": [{"key": q["_key"], "rev": q["_rev"]}]}, 422, "both"),
        ({"jobs": [done(q), {**done(p), "key": "nope"}]}, 422, "nope"),
        (
            {"jobs": [done(q)], "claim": {"resources": ONE_CPU, "sort_method": "best"}},
            422,
            "sort_method",
        ),
        ({"jobs": [done(q)], "surprise": 1}, 422, "surprise"),
    ]
    for body, code, words in cases:
        answer = batch(api, node, expect=code, **body)
        assert words in answer["errorMessage"], (body, answer)
    later = {**done(q), "result": {**result(q), "run_id": 5}}
    answer = api.post(
        "/complete_jobs", {"run_id": 5, "compute_node_key": node, "jobs": [later]}, expect=409
    )
    assert "run_id 5 is stale" in answer["errorMessage"]
    answer = batch(api, "999", expect=404, jobs=[done(q)])
    assert "999" in answer["errorMessage"]
    assert row_counts(backend) == before
    assert set(api.statuses().values()) == {"submitted"}


def test_failures_in_one_batch_cancel_their_cascades(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    f1 = api.job("f1")["_id"]
    f2 = api.job("f2")["_id"]
    ok = api.job("ok")["_id"]
    api.job("c1", blocked_by=[f1])
    api.job("c2", blocked_by=[f2])
    api.job("c12", blocked_by=[f1, f2])
    api.job("after_ok", blocked_by=[ok])
    api.initialize()
    node = api.node()
    jobs = {j["name"]: api.start(j, node) for j in api.claim()}
    answer = batch(
        api,
        node,
        jobs=[done(jobs["f1"], code=2), done(jobs["f2"], code=3), done(jobs["ok"])],
        claim={"resources": BIG_NODE},
    )
    assert [j["name"] for j in answer["jobs"]] == ["after_ok"]
    statuses = api.statuses()
    assert {n: statuses[n] for n in ("c1", "c2", "c12")} == dict.fromkeys(
        ("c1", "c2", "c12"), "canceled"
    )
    failed = [e for e in api.get("/events")["items"] if e.get("type") == "failed"]
    assert sorted(
        (e["job_key"], e["return_code"], len(e["canceled_job_keys"])) for e in failed
    ) == sorted([(jobs["f1"]["_key"], 2, 2), (jobs["f2"]["_key"], 3, 2)])


def test_lookahead_queues_claimed_jobs_on_the_node_and_release_returns_them(
    client: Any, workflow: str
) -> None:
    api = Api(client, workflow)
    for i in range(6):
        api.job(f"j{i}")
    api.initialize()
    node = api.post(
        "/compute_nodes",
        {"hostname": "n", "pid": 1, "start_time": "now", "resources": {**ONE_CPU, "num_cpus": 2}},
    )["_key"]
    answer = batch(api, node, claim={"resources": ONE_CPU, "lookahead": 3})
    queued = answer["jobs"]
    assert len(queued) == 4  # one for the free CPU, three queued
    jobs = api.jobs()
    assert all(jobs[j["name"]]["status"] == "submitted_pending" for j in queued)
    nodes = api.get("/compute_nodes")["items"]
    assert nodes[0]["_key"] == node
    # Giving back the queue: ready again and claimable by anyone.
    back = [{"key": j["_key"], "rev": j["_rev"]} for j in queued[1:]]
    answer = batch(api, node, release=back)
    assert [r["status"] for r in answer["released"]] == ["ready"] * 3
    assert sorted(api.statuses().values()) == ["ready"] * 5 + ["submitted_pending"]
    # A released job cannot be released twice, nor a job of another state.
    again = batch(
        api, node, release=[{"key": queued[1]["_key"], "rev": answer["released"][0]["_rev"]}]
    )
    assert again["errors"][0]["code"] == 409 and again["released"] == []
