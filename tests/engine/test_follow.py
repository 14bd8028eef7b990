"""Successors and follows: a runner starts a job as its blockers exit there, the server agrees."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from tests.conftest import row_counts
from tests.engine.helpers import BIG_NODE, Api
from tests.engine.test_batch import batch, done


def chain(api: Api, names: str) -> dict[str, dict[str, Any]]:
    """Jobs named by the letters of `names`, each blocked by the one before; initialized."""
    prev: list[str] = []
    for name in names:
        prev = [api.job(name, blocked_by=prev)["_id"]]
    api.initialize()
    return api.jobs()


def hints(answer: dict[str, Any], keys: dict[str, str]) -> list[tuple[str, list[str]]]:
    """The answer's successors as (name, names of the blockers it waits for)."""
    names = {k: n for n, k in keys.items()}
    return [
        (item["job"]["name"], [names[k] for k in item["after"]])
        for item in answer.get("successors", [])
    ]


def claim_with_successors(api: Api, node: str, n: int = 8, held: list[str] | None = None) -> Any:
    claim = {"resources": BIG_NODE, "limit": 1, "successors": n, "held": held or []}
    return batch(api, node, claim=claim)


def keys_of(jobs: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {n: j["_key"] for n, j in jobs.items()}


def test_a_chain_is_hinted_nearest_first(client: Any, workflow: str, backend: Engine) -> None:
    api = Api(client, workflow)
    keys = keys_of(chain(api, "abcd"))
    node = api.node()
    answer = claim_with_successors(api, node, n=2)
    assert [j["name"] for j in answer["jobs"]] == ["a"]
    assert hints(answer, keys) == [("b", ["a"]), ("c", ["b"])]
    assert all(item["job"]["status"] == "blocked" for item in answer["successors"])
    # Hints change nothing: b and c stay blocked and unclaimed.
    assert api.statuses() == {
        "a": "submitted_pending",
        "b": "blocked",
        "c": "blocked",
        "d": "blocked",
    }


def test_follows_along_a_chain_apply_in_one_request(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    keys = keys_of(chain(api, "abcd"))
    node = api.node()
    answer = claim_with_successors(api, node)
    [a] = answer["jobs"]
    b, c, _d = (item["job"] for item in answer["successors"])
    # The runner ran a, then b and c as each blocker exited 0; c is still running.
    answer = batch(
        api,
        node,
        start=[{"key": a["_key"], "rev": a["_rev"]}],
        jobs=[done(a), done(b)],
        follow=[{"key": j["_key"], "rev": j["_rev"]} for j in (b, c)],
        claim={"resources": BIG_NODE, "successors": 8, "held": [c["_key"]]},
    )
    assert answer["errors"] == []
    assert [s["_key"] for s in answer["started"]] == [keys["a"], keys["b"], keys["c"]]
    assert [s["_key"] for s in answer["completed"]] == [keys["a"], keys["b"]]
    jobs = api.jobs()
    assert {n: j["status"] for n, j in jobs.items()} == {
        "a": "done",
        "b": "done",
        "c": "submitted",
        "d": "blocked",
    }
    assert jobs["c"]["_rev"] == answer["started"][2]["_rev"]
    assert hints(answer, keys) == [("d", ["c"])]
    assert [r["job_key"] for r in api.get("/results")["items"]] == [keys["a"], keys["b"]]


def test_a_join_is_hinted_only_when_every_blocker_is_held_here(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    a = api.job("a")["_id"]
    x = api.job("x")["_id"]
    api.job("b", blocked_by=[a])
    api.job("ax", blocked_by=[a, x])
    api.initialize()
    keys = keys_of(api.jobs())
    here, there = api.node("n1"), api.node("n2")
    claim = {"resources": BIG_NODE, "limit": 1, "successors": 8}
    answer = batch(api, here, claim=claim)
    assert [j["name"] for j in answer["jobs"]] == ["a"]
    assert hints(answer, keys) == [("b", ["a"])]
    # x goes to another node: ax waits for both nodes, so neither may follow it.
    answer = batch(api, there, claim=claim)
    assert [j["name"] for j in answer["jobs"]] == ["x"]
    assert hints(answer, keys) == []
    # Holding both (the first level checks that the node really holds them): the join too.
    answer = batch(api, here, claim={**claim, "limit": 0, "held": [keys["a"], keys["x"]]})
    assert hints(answer, keys) == [("b", ["a"])]


def test_a_diamond_held_by_one_node_hints_the_join_after_both_sides(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    a = api.job("a")["_id"]
    b = api.job("b", blocked_by=[a])["_id"]
    c = api.job("c", blocked_by=[a])["_id"]
    api.job("d", blocked_by=[b, c])
    api.initialize()
    keys = keys_of(api.jobs())
    node = api.node()
    answer = claim_with_successors(api, node)
    assert hints(answer, keys) == [("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])]


def test_successors_that_do_not_fit_the_node_are_not_hinted(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    big = api.rr("big", num_cpus=64)
    a = api.job("a")["_id"]
    b = api.job("b", blocked_by=[a], resource_requirements=big)["_id"]
    api.job("c", blocked_by=[b])
    api.initialize()
    small = {"num_cpus": 4, "memory_gb": 8, "num_gpus": 0, "num_nodes": 1}
    body = {"hostname": "small", "pid": 1, "start_time": "2024-01-01 00:00:00.0"}
    node = api.post("/compute_nodes", {**body, "resources": small})["_key"]
    claim = {"resources": small, "limit": 1, "successors": 8}
    answer = batch(api, node, claim=claim)
    assert [j["name"] for j in answer["jobs"]] == ["a"]
    assert answer["successors"] == []


def a_then_b(api: Api) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A two-job chain, a claimed by a new node with b as its successor: (node, a, b)."""
    chain(api, "ab")
    node = api.node()
    answer = claim_with_successors(api, node)
    [a] = answer["jobs"]
    return node, a, answer["successors"][0]["job"]


def test_a_follow_whose_blocker_did_not_finish_is_refused(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    node, _a, b = a_then_b(api)
    before = row_counts(backend)
    # a's completion is missing: b is still blocked, so its follow (and its result) are refused.
    answer = batch(api, node, follow=[{"key": b["_key"], "rev": b["_rev"]}], jobs=[done(b)])
    assert [(e["_key"], e["operation"], e["code"]) for e in answer["errors"]] == [
        (b["_key"], "follow", 409),
        (b["_key"], "complete", 409),
    ]
    assert "blocked, not ready" in answer["errors"][0]["message"]
    assert answer["started"] == [] and answer["completed"] == []
    assert api.statuses()["b"] == "blocked"
    assert row_counts(backend) == before


def report_a_and_follow_b(
    api: Api, node: str, a: dict[str, Any], b: dict[str, Any], code: int = 0
) -> Any:
    """a started and finished with `code`, b followed, in one report."""
    return batch(
        api,
        node,
        start=[{"key": a["_key"], "rev": a["_rev"]}],
        jobs=[done(a, code=code)],
        follow=[{"key": b["_key"], "rev": b["_rev"]}],
    )


def test_a_follow_of_a_job_changed_since_its_hint_is_refused(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    node, a, b = a_then_b(api)
    edited = api.put(f"/jobs/{b['_key']}", {**b, "command": "something else"})
    assert edited["_rev"] != b["_rev"]
    answer = report_a_and_follow_b(api, node, a, b)
    assert [(e["_key"], e["operation"]) for e in answer["errors"]] == [(b["_key"], "follow")]
    assert "changed since _rev" in answer["errors"][0]["message"]
    # a's completion still counts, and b is ready for whoever claims it.
    assert api.statuses() == {"a": "done", "b": "ready"}


def test_a_failed_blocker_cancels_its_successor_and_refuses_the_follow(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    node, a, b = a_then_b(api)
    answer = report_a_and_follow_b(api, node, a, b, code=1)
    assert [(e["_key"], e["operation"]) for e in answer["errors"]] == [(b["_key"], "follow")]
    assert api.statuses() == {"a": "done", "b": "canceled"}


def test_a_follow_applies_once_its_blocker_completes_in_the_same_report(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    node, a, b = a_then_b(api)
    answer = report_a_and_follow_b(api, node, a, b)
    assert answer["errors"] == []
    jobs = api.jobs()
    assert jobs["b"]["status"] == "submitted"
    assert [s["_key"] for s in answer["started"]] == [a["_key"], b["_key"]]
    assert answer["started"][1]["_rev"] == jobs["b"]["_rev"]


def test_bad_follows_are_rejected_whole(client: Any, workflow: str, backend: Engine) -> None:
    api = Api(client, workflow)
    node, a, _b = a_then_b(api)
    before = row_counts(backend)
    both = {"key": a["_key"], "rev": a["_rev"]}
    cases = [
        ({"start": [both], "follow": [both]}, 422, "both started and followed"),
        ({"follow": [{"key": "x", "rev": "1"}]}, 422, "key"),
        ({"claim": {"resources": BIG_NODE, "successors": 10**6}}, 422, "successors"),
        ({"claim": {"resources": BIG_NODE, "successors": 1, "held": ["x"]}}, 422, "held"),
        ({"claim": {"resources": BIG_NODE, "successors": 1, "known": ["-1"]}}, 422, "known"),
    ]
    for body, code, words in cases:
        answer = batch(api, node, expect=code, **body)
        assert words in answer["errorMessage"], answer
    assert row_counts(backend) == before
    assert api.statuses() == {"a": "submitted_pending", "b": "blocked"}


def test_known_successors_are_walked_from_not_returned_again(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    keys = keys_of(chain(api, "abcdef"))
    node = api.node()
    answer = claim_with_successors(api, node, n=2)
    assert hints(answer, keys) == [("b", ["a"]), ("c", ["b"])]
    # Topping up: the runner holds a and knows b and c; two more come from beyond c.
    claim = {
        "resources": BIG_NODE,
        "limit": 0,
        "successors": 2,
        "held": [keys["a"]],
        "known": [keys["b"], keys["c"]],
    }
    answer = batch(api, node, claim=claim)
    assert hints(answer, keys) == [("d", ["c"]), ("e", ["d"])]
