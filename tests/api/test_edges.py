"""Edge routes: checked endpoints, and job fields derived from edges kept in step."""

from __future__ import annotations

from typing import Any

from tests.conftest import row_counts
from tests.engine.helpers import Api, run_to_completion


def test_edge_crud(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    f = api.file("f", "f.txt")
    job = api.job("a")
    edge = api.post("/edges/needs", {"_from": job["_id"], "_to": f, "data": {"why": "input"}})
    assert edge["_from"] == job["_id"] and edge["_to"] == f and edge["data"] == {"why": "input"}
    assert edge["_id"] == f"needs/{edge['_key']}"
    assert api.get(f"/edges/needs/{edge['_key']}") == edge
    assert api.get("/jobs/" + job["_key"])["input_files"] == [f]
    listed = api.get("/edges/needs", skip=0, limit=10)
    assert listed["total_count"] == 1 and listed["items"] == [edge]
    # The same key under another edge collection is not that edge.
    api.get(f"/edges/produces/{edge['_key']}", expect=404)
    assert api.call("DELETE", f"/edges/needs/{edge['_key']}") == edge
    api.get(f"/edges/needs/{edge['_key']}", expect=404)
    api.post("/edges/needs", {"_from": job["_id"], "_to": f})
    api.post("/edges/produces", {"_from": job["_id"], "_to": api.file("g", "g.txt")})
    assert "deleted 1 needs edges" in api.call("DELETE", "/edges/needs")["message"]
    assert api.get("/edges/needs")["total_count"] == 0
    assert api.get("/edges/produces")["total_count"] == 1


def test_bad_edges_name_the_culprit_and_write_nothing(
    client: Any, workflow: str, backend: Any
) -> None:
    api = Api(client, workflow)
    f = api.file("f", "f.txt")
    job = api.job("a")
    other = client.post("/workflows", json={"user": "x"}).json["_key"]
    foreign = client.post(f"/workflows/{other}/files", json={"path": "z"}).json["_id"]
    api.post("/edges/needs", {"_from": job["_id"], "_to": f})
    before = row_counts(backend)
    cases = [
        ("/edges/wants", {"_from": job["_id"], "_to": f}, 422, "unknown edge collection 'wants'"),
        ("/edges/needs", {"_from": f, "_to": job["_id"]}, 422, "needs edge _from: 'files/"),
        (
            "/edges/needs",
            {"_from": job["_id"], "_to": "files/99999"},
            422,
            "files/99999 does not exist in workflow",
        ),
        ("/edges/needs", {"_from": job["_id"], "_to": foreign}, 422, "does not exist"),
        ("/edges/needs", {"_from": job["_id"], "_to": "files/abc"}, 422, "keys are integers"),
        ("/edges/needs", {"_from": job["_id"]}, 422, "_to: Field required"),
        ("/edges/needs", {"_from": job["_id"], "_to": 5}, 422, "_to"),
        ("/edges/needs", {"_from": job["_id"], "_to": f, "color": 1}, 422, "color"),
        ("/edges/needs", {"_from": job["_id"], "_to": f}, 409, "already exists"),
        ("/edges/blocks", {"_from": job["_id"], "_to": job["_id"]}, 422, "cannot block itself"),
        (
            "/edges/executed",
            {"_from": job["_id"], "_to": job["_id"]},
            422,
            "must reference compute_nodes",
        ),
    ]
    for path, body, status, message in cases:
        resp = client.post(f"/workflows/{workflow}{path}", json=body)
        assert resp.status_code == status, (path, body, resp.json)
        assert message in resp.json["errorMessage"], (message, resp.json["errorMessage"])
    for method, path in (
        ("GET", "/edges/wants"),
        ("DELETE", "/edges/wants"),
        ("GET", "/edges/wants/1"),
        ("DELETE", "/edges/wants/1"),
    ):
        resp = client.open(f"/workflows/{workflow}{path}", method=method)
        assert resp.status_code == 422 and "wants" in resp.json["errorMessage"]
    assert client.get(f"/workflows/{workflow}/edges/needs/abc").status_code == 404
    assert client.get("/workflows/99999/edges/needs").status_code == 404
    assert row_counts(backend) == before


def _two_ready(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    a, b = api.job("a"), api.job("b")
    api.initialize()
    assert api.statuses() == {"a": "ready", "b": "ready"}
    return a, b


def test_adding_a_blocks_edge_blocks_the_job_until_its_blocker_finishes(
    client: Any, workflow: str
) -> None:
    api = Api(client, workflow)
    a, b = _two_ready(api)
    api.post("/edges/blocks", {"_from": a["_id"], "_to": b["_id"]})
    assert api.statuses() == {"a": "ready", "b": "blocked"}
    assert api.get(f"/jobs/{b['_key']}")["blocked_by"] == [a["_id"]]
    order = run_to_completion(api, api.node())
    assert order == ["a", "b"]  # completion's counter saw the hand-made edge
    assert api.statuses() == {"a": "done", "b": "done"}


def test_removing_the_last_blocker_makes_the_job_ready(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    a, b = _two_ready(api)
    c = api.job("c")
    edge = api.post("/edges/blocks", {"_from": a["_id"], "_to": c["_id"]})
    api.post("/edges/blocks", {"_from": b["_id"], "_to": c["_id"]})
    api.initialize()
    assert api.statuses()["c"] == "blocked"
    api.call("DELETE", f"/edges/blocks/{edge['_key']}")
    assert api.statuses()["c"] == "blocked"  # still waits for b
    api.call("DELETE", "/edges/blocks")
    assert api.statuses() == {"a": "ready", "b": "ready", "c": "ready"}
    # A finished blocker does not hold a job back.
    order = run_to_completion(api, api.node())
    assert sorted(order) == ["a", "b", "c"]


def test_blocks_edge_that_makes_a_cycle_is_refused(
    client: Any, workflow: str, backend: Any
) -> None:
    api = Api(client, workflow)
    a, b = _two_ready(api)
    c = api.job("c")
    api.post("/edges/blocks", {"_from": a["_id"], "_to": b["_id"]})
    api.post("/edges/blocks", {"_from": b["_id"], "_to": c["_id"]})
    before = row_counts(backend)
    cycle = api.post("/edges/blocks", {"_from": c["_id"], "_to": a["_id"]}, expect=422)
    assert "would make a cycle" in cycle["errorMessage"]
    assert row_counts(backend) == before
    assert api.statuses()["a"] == "ready"


def test_claimed_job_cannot_get_a_new_unfinished_blocker(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    _a, b = _two_ready(api)
    claimed = api.post("/prepare_next_jobs_for_submission", limit=2)["jobs"]
    assert {j["name"] for j in claimed} == {"a", "b"}
    c = api.job("c")
    refused = api.post("/edges/blocks", {"_from": c["_id"], "_to": b["_id"]}, expect=409)
    assert "job " + b["_key"] in refused["errorMessage"]
    assert "submitted_pending" in refused["errorMessage"]
    # A finished blocker is harmless: the edge is stored and nothing changes.
    node = api.node()
    done = api.complete(api.start(claimed[0], node), node)
    other = claimed[1]
    api.post("/edges/blocks", {"_from": done["_id"], "_to": other["_id"]})
    assert api.get(f"/jobs/{other['_key']}")["status"] == "submitted_pending"


def test_requires_and_scheduled_bys_edges_set_the_job_fields(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    small = api.rr("small", num_cpus=2, memory="2g", runtime="P0DT1H")
    big = api.rr("big", num_cpus=8, memory="16g", runtime="P0DT2H")
    job = api.job("a")
    edge = api.post("/edges/requires", {"_from": job["_id"], "_to": small})
    internal = api.get(f"/jobs/{job['_key']}")["internal"]
    assert (internal["num_cpus"], internal["memory_bytes"]) == (2, 2 * 1024**3)
    assert api.get(f"/jobs/{job['_key']}/resource_requirements")["name"] == "small"
    second = api.post("/edges/requires", {"_from": job["_id"], "_to": big}, expect=409)
    assert "already has a requires edge" in second["errorMessage"]
    switched = api.put(f"/jobs/{job['_key']}/resource_requirements/{big.split('/')[1]}")
    assert switched["_from"] == job["_id"] and switched["_to"] == big
    assert api.get(f"/jobs/{job['_key']}")["internal"]["num_cpus"] == 8
    assert api.get("/edges/requires")["total_count"] == 1
    api.get(f"/edges/requires/{edge['_key']}", expect=404)  # replaced
    api.call("DELETE", f"/edges/requires/{switched['_key']}")
    internal = api.get(f"/jobs/{job['_key']}")["internal"]
    assert (internal["num_cpus"], internal["memory_bytes"]) == (1, 1024**2)
    api.get(f"/jobs/{job['_key']}/resource_requirements", expect=404)

    slurm = api.post("/slurm_schedulers", {"name": "s", "account": "a"})["_id"]
    api.post("/edges/scheduled_bys", {"_from": job["_id"], "_to": slurm})
    stored = api.get(f"/jobs/{job['_key']}")
    assert stored["scheduler"] == slurm and stored["internal"]["scheduler_config_id"] == slurm
    api.call("DELETE", "/edges/scheduled_bys")
    stored = api.get(f"/jobs/{job['_key']}")
    assert stored["scheduler"] is None and stored["internal"]["scheduler_config_id"] is None
