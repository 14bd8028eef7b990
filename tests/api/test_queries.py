"""Query routes over a real diamond: what jobs use and produce, what follows, events, joins."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.helpers import Api, run_to_completion


@pytest.fixture
def diamond(client: Any) -> Api:
    """The example diamond, stored through POST /workflow_specifications and initialized."""
    spec = client.get("/workflow_specifications/example").json
    wf = client.post("/workflow_specifications", json=spec).json["_key"]
    api = Api(client, wf)
    api.initialize()
    return api


def names(items: list[dict[str, Any]]) -> list[str]:
    return [d["name"] for d in items]


def test_job_keys_status_and_downstream(diamond: Api) -> None:
    jobs = diamond.jobs()
    keys = diamond.get("/job_keys")["items"]
    assert keys == sorted((j["_key"] for j in jobs.values()), key=int)
    ready = diamond.get("/jobs/find_by_status/ready")
    assert names(ready["items"]) == ["preprocess"] and ready["total_count"] == 1
    assert ready["items"][0]["input_files"]  # full job documents with references
    blocked = diamond.get("/jobs/find_by_status/blocked", skip=1, limit=1)
    assert blocked["total_count"] == 3 and blocked["count"] == 1 and blocked["has_more"]
    assert diamond.get("/jobs/find_by_status/done")["total_count"] == 0
    bad = diamond.get("/jobs/find_by_status/finished", expect=422)
    assert "finished" in bad["errorMessage"] and "ready" in bad["errorMessage"]
    down = diamond.get(f"/downstream_jobs/{jobs['preprocess']['_key']}")
    assert sorted(names(down["items"])) == ["postprocess", "work1", "work2"]
    assert names(diamond.get(f"/downstream_jobs/{jobs['work2']['_key']}")["items"]) == [
        "postprocess"
    ]
    assert diamond.get(f"/downstream_jobs/{jobs['postprocess']['_key']}")["total_count"] == 0
    page = diamond.get(f"/downstream_jobs/{jobs['preprocess']['_key']}", skip=2, limit=5)
    assert page["count"] == 1 and page["total_count"] == 3 and page["has_more"] is False
    diamond.get("/downstream_jobs/99999", expect=404)


def test_files_produced_and_needed(diamond: Api) -> None:
    jobs = diamond.jobs()
    produced = diamond.get(f"/files/produced_by_job/{jobs['preprocess']['_key']}")
    assert names(produced["items"]) == ["f1", "f2"] and produced["total_count"] == 2
    assert produced["items"][0]["path"] == "output/diamond/f1.json"
    f1 = produced["items"][0]["_key"]
    needing = diamond.get(f"/jobs/find_by_needs_file/{f1}")
    assert names(needing["items"]) == ["work1"]
    script = {f["name"]: f for f in diamond.get("/files")["items"]}["work_script"]["_key"]
    assert names(diamond.get(f"/jobs/find_by_needs_file/{script}", limit=1)["items"]) == ["work1"]
    assert diamond.get(f"/jobs/find_by_needs_file/{script}")["total_count"] == 2
    diamond.get("/jobs/find_by_needs_file/99999", expect=404)
    diamond.get("/files/produced_by_job/99999", expect=404)


def test_user_data_of_jobs(diamond: Api) -> None:
    jobs = diamond.jobs()
    work1, post = jobs["work1"]["_key"], jobs["postprocess"]["_key"]
    consumes = diamond.get(f"/jobs/{work1}/user_data_consumes")
    assert consumes["items"][0]["data"] == {"scale": 2} and consumes["total_count"] == 1
    assert diamond.get(f"/jobs/{work1}/user_data_stores")["total_count"] == 0
    assert names(diamond.get(f"/jobs/{post}/user_data_stores")["items"]) == ["summary"]
    added = diamond.post(f"/jobs/{post}/user_data", {"name": "extra", "data": {"k": 1}})
    assert added["_id"].startswith("user_data/") and added["data"] == {"k": 1}
    assert names(diamond.get(f"/jobs/{post}/user_data_stores")["items"]) == ["summary", "extra"]
    assert added["_id"] in diamond.get(f"/jobs/{post}")["output_user_data"]
    bad = diamond.post(f"/jobs/{post}/user_data", {"data": [1]}, expect=422)
    assert "data" in bad["errorMessage"]
    diamond.post("/jobs/99999/user_data", {"name": "x"}, expect=404)


def test_results_and_process_stats(diamond: Api) -> None:
    jobs = diamond.jobs()
    key = jobs["preprocess"]["_key"]
    missing = diamond.get(f"/results/find_by_job/{key}", expect=404)
    assert "no result" in missing["errorMessage"]
    assert diamond.get(f"/jobs/{key}/process_stats") == []
    run_to_completion(diamond, diamond.node())
    latest = diamond.get(f"/results/find_by_job/{key}")
    assert latest["job_key"] == key and latest["return_code"] == 0
    for run in (1, 0):
        stats = diamond.post(
            "/job_process_stats",
            {
                "job_key": key,
                "run_id": run,
                "avg_cpu_percent": 10,
                "max_cpu_percent": 20,
                "avg_rss": 1,
                "max_rss": 2,
                "num_samples": 3,
                "timestamp": "now",
            },
        )
    diamond.post("/edges/process_used", {"_from": jobs["preprocess"]["_id"], "_to": stats["_id"]})
    assert [s["run_id"] for s in diamond.get(f"/jobs/{key}/process_stats")] == [0, 1]
    fields = {k: v for k, v in latest.items() if not k.startswith("_")}
    diamond.post("/results", {**fields, "run_id": 3, "return_code": 9})
    assert diamond.get(f"/results/find_by_job/{key}")["return_code"] == 9


def test_collection_names_and_joins(diamond: Api) -> None:
    names_ = diamond.client.get(f"/workflows/{diamond.wf}/collection_names").json["names"]
    assert {"jobs", "files", "user_data", "blocks", "needs", "requires"} <= set(names_)
    base = f"/workflows/{diamond.wf}"
    out = diamond.client.post(
        f"{base}/join_by_outbound_edge/jobs/requires", json={"name": "work2"}
    ).json
    assert out["total_count"] == 1
    row = out["items"][0]
    assert row["from"]["name"] == "work2" and row["to"]["name"] == "large"
    assert row["edge"]["_from"] == row["from"]["_id"]
    into = diamond.client.post(
        f"{base}/join_by_inbound_edge/files/needs",
        json={},
        query_string={"collection_name": "work_script"},
    ).json
    assert sorted(r["from"]["name"] for r in into["items"]) == ["work1", "work2"]
    assert {r["to"]["name"] for r in into["items"]} == {"work_script"}
    paged = diamond.client.post(
        f"{base}/join_by_outbound_edge/jobs/needs", json={}, query_string={"skip": 2, "limit": 3}
    ).json
    assert paged["total_count"] == 9 and paged["count"] == 3 and paged["has_more"] is True
    status = diamond.client.post(
        f"{base}/join_by_outbound_edge/jobs/blocks", json={"status": "ready"}
    ).json
    assert {(r["from"]["name"], r["to"]["name"]) for r in status["items"]} == {
        ("preprocess", "work1"),
        ("preprocess", "work2"),
    }
    for path, body, message in (
        ("join_by_outbound_edge/files/needs", {}, "none is outbound from files"),
        ("join_by_inbound_edge/nodes/needs", {}, "unknown collection 'nodes'"),
        ("join_by_inbound_edge/files/wants", {}, "unknown edge collection 'wants'"),
        ("join_by_outbound_edge/jobs/needs", {"colour": "red"}, "cannot filter jobs by"),
        ("join_by_outbound_edge/jobs/needs", {"priority": "high"}, "must be a int"),
        ("join_by_outbound_edge/jobs/needs", {"_key": "x"}, "keys are integers"),
    ):
        resp = diamond.client.post(f"{base}/{path}", json=body)
        assert resp.status_code == 422, (path, resp.json)
        assert message in resp.json["errorMessage"], resp.json["errorMessage"]
    listed = diamond.client.post(f"{base}/join_by_outbound_edge/jobs/needs", json=[1])
    assert listed.status_code == 422
    empty = diamond.client.post(f"{base}/join_by_outbound_edge/jobs/needs")
    assert empty.status_code == 422 and "required" in empty.json["errorMessage"]


def test_job_counts_name_every_status(diamond: Api) -> None:
    counts = diamond.get("/job_counts")
    assert counts["total"] == 4 and counts["workflow_key"] == diamond.wf
    assert counts["counts"]["ready"] == 1 and counts["counts"]["blocked"] == 3
    assert counts["counts"]["done"] == 0 and len(counts["counts"]) == 10
    run_to_completion(diamond, diamond.node())
    after = diamond.get("/job_counts")["counts"]
    assert after["done"] == 4 and after["ready"] == after["blocked"] == 0
    missing = diamond.client.get("/workflows/99999/job_counts")
    assert missing.status_code == 404 and "99999" in missing.json["errorMessage"]


def test_events_after_timestamp(client: Any, workflow: str) -> None:
    base = f"/workflows/{workflow}"
    assert client.get(f"{base}/latest_event_timestamp").json == {"timestamp": 0}
    for stamp, category in ((1000, "a"), (2000, "b"), (3000, "a")):
        client.post(f"{base}/events", json={"timestamp": stamp, "category": category})
    assert client.get(f"{base}/latest_event_timestamp").json == {"timestamp": 3000}
    after = client.get(f"{base}/events_after_timestamp/1000").json
    assert [e["timestamp"] for e in after["items"]] == [2000, 3000]
    assert after["skip"] == 0 and after["total_count"] == 2
    only_a = client.get(f"{base}/events_after_timestamp/0?category=a&limit=1").json
    assert [e["timestamp"] for e in only_a["items"]] == [1000] and only_a["has_more"] is True
    assert client.get(f"{base}/events_after_timestamp/2500.5").json["count"] == 1
    bad = client.get(f"{base}/events_after_timestamp/yesterday")
    assert bad.status_code == 400 and "timestamp" in bad.json["errorMessage"]
    assert client.get(f"{base}/events_after_timestamp/nan").status_code == 422
    assert client.get("/workflows/99999/latest_event_timestamp").status_code == 404


def test_dot_graphs(diamond: Api) -> None:
    get = diamond.client.get
    jobs = diamond.jobs()
    deps = get(f"/workflows/{diamond.wf}/dot_graph/job_job_dependencies").json["graph"]
    assert deps.startswith('strict digraph "job_job_dependencies" {') and deps.endswith("}")
    pre, w1 = jobs["preprocess"]["_id"], jobs["work1"]["_id"]
    assert f'"{pre}" [label="preprocess"];' in deps
    assert f'"{pre}" -> "{w1}" [label="blocks"];' in deps
    assert deps.count("->") == 4
    files = get(f"/workflows/{diamond.wf}/dot_graph/job_file_dependencies").json["graph"]
    assert files.count('[label="produces"]') == 5 and files.count('[label="needs"]') == 9
    assert '[label="work_script", shape=box]' in files
    data = get(f"/workflows/{diamond.wf}/dot_graph/job_user_data_dependencies").json["graph"]
    assert '[label="my_val", shape=box]' in data and '[label="consumes"]' in data
    bad = get(f"/workflows/{diamond.wf}/dot_graph/everything")
    assert bad.status_code == 422 and "job_job_dependencies" in bad.json["errorMessage"]


def test_dot_labels_are_quoted(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    api.job('say "hi"\\now')
    graph = client.get(f"/workflows/{workflow}/dot_graph/job_job_dependencies").json["graph"]
    assert '[label="say \\"hi\\"\\\\now"];' in graph
