"""CRUD of plain collections and workflows, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any


def test_file_crud_roundtrip(client: Any, workflow: str) -> None:
    created = client.post(f"/workflows/{workflow}/files", json={"name": "in", "path": "a.txt"})
    assert created.status_code == 200
    doc = created.json
    assert doc["_id"] == f"files/{doc['_key']}" and doc["_rev"] == "1"
    listed = client.get(f"/workflows/{workflow}/files?name=in").json
    assert listed["total_count"] == 1 and listed["items"][0]["path"] == "a.txt"
    changed = client.put(
        f"/workflows/{workflow}/files/{doc['_key']}", json={**doc, "path": "b.txt"}
    ).json
    assert changed["path"] == "b.txt" and changed["_rev"] == "2"
    stale = client.put(f"/workflows/{workflow}/files/{doc['_key']}", json={**doc, "path": "c"})
    assert stale.status_code == 409 and "stale _rev 1" in stale.json["errorMessage"]
    assert client.get(f"/workflows/{workflow}/files/{doc['_key']}").json["path"] == "b.txt"
    assert client.delete(f"/workflows/{workflow}/files/{doc['_key']}").status_code == 200
    assert client.get(f"/workflows/{workflow}/files/{doc['_key']}").status_code == 404


def test_paging_envelope_and_sorting(client: Any, workflow: str) -> None:
    for i in range(5):
        client.post(f"/workflows/{workflow}/user_data", json={"name": f"u{i}", "data": {"i": i}})
    page = client.get(
        f"/workflows/{workflow}/user_data?skip=1&limit=2&sort_by=name&reverse_sort=true"
    ).json
    assert [d["name"] for d in page["items"]] == ["u3", "u2"]
    assert page["count"] == 2 and page["total_count"] == 5 and page["has_more"] is True
    assert page["skip"] == 1 and page["max_limit"] == 100000


def test_deleting_workflow_deletes_everything(client: Any, workflow: str, backend: Any) -> None:
    from tests.conftest import row_counts

    client.post(f"/workflows/{workflow}/files", json={"path": "x"})
    f = client.post(f"/workflows/{workflow}/files", json={"path": "y"}).json["_id"]
    client.post(f"/workflows/{workflow}/jobs", json={"command": "echo", "input_files": [f]})
    assert client.delete(f"/workflows/{workflow}").status_code == 200
    assert all(n == 0 for n in row_counts(backend).values()), row_counts(backend)


def test_config_and_status_documents(client: Any, workflow: str) -> None:
    cfg = client.get(f"/workflows/{workflow}/config").json
    assert cfg["prepare_jobs_sort_method"] == "gpus_runtime_memory"
    cfg["compute_node_wait_for_new_jobs_seconds"] = 90
    out = client.put(f"/workflows/{workflow}/config", json=cfg).json
    assert out["compute_node_wait_for_new_jobs_seconds"] == 90 and out["_rev"] == "2"
    status = client.get(f"/workflows/{workflow}/status").json
    assert status["run_id"] == 0 and status["is_canceled"] is False


def test_events_are_free_form(client: Any, workflow: str) -> None:
    ev = client.post(f"/workflows/{workflow}/events", json={"category": "job", "msg": "hi"}).json
    assert ev["msg"] == "hi" and ev["category"] == "job" and ev["timestamp"] > 1.6e12
    assert client.get(f"/workflows/{workflow}/events?category=job").json["total_count"] == 1
    assert client.get(f"/workflows/{workflow}/events?category=other").json["total_count"] == 0


def test_a_fetched_job_document_can_be_sent_back(client: Any, workflow: str) -> None:
    base = f"/workflows/{workflow}/jobs"
    job = client.post(base, json={"name": "a", "command": "echo 1"}).json
    doc = client.get(f"{base}/{job['_key']}").json
    assert {"run_id", "num_retries", "error_category"} <= set(doc)
    # Read-only fields echo back unchanged in meaning: the engine's values win.
    sent = {**doc, "command": "echo 2", "run_id": 7, "num_retries": 9, "error_category": "DATA"}
    resp = client.put(f"{base}/{job['_key']}", json=sent)
    assert resp.status_code == 200, resp.json
    got = resp.json
    assert got["command"] == "echo 2" and got["_rev"] == "2"
    assert (got["run_id"], got["num_retries"], got["error_category"]) == (0, 0, None)


def test_replacing_a_blocked_job_keeps_its_revision_and_blocker_count(
    client: Any, workflow: str
) -> None:
    from tests.engine.helpers import Api

    api = Api(client, workflow)
    a = api.job("a")["_id"]
    x = api.job("x")["_id"]
    b = api.job("b", blocked_by=[a, x])
    e = api.job("e", blocked_by=[x])
    api.initialize()
    b = api.get(f"/jobs/{b['_key']}")
    for expected in (int(b["_rev"]) + 1, int(b["_rev"]) + 2):
        b = api.put(f"/jobs/{b['_key']}", {**b, "command": f"echo {expected}"})
        assert b["_rev"] == str(expected) and b["status"] == "blocked"
    # Dropping its unfinished blockers makes a blocked job ready at once.
    e = api.get(f"/jobs/{e['_key']}")
    assert api.put(f"/jobs/{e['_key']}", {**e, "blocked_by": []})["status"] == "ready"
    # b still has two blockers: finishing one leaves it blocked, finishing both readies it.
    node = api.node()
    claimed = {j["name"]: j for j in api.claim()}
    api.complete(api.start(claimed["a"], node), node)
    assert api.statuses()["b"] == "blocked"
    api.complete(api.start(claimed["x"], node), node)
    assert api.statuses()["b"] == "ready"
