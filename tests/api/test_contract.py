"""The torc 0.6.4 contract: every operation is served, and documents carry every listed field."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from hpcflow.api.registry import OPERATIONS
from hpcflow.app import create_app
from hpcflow.config import Settings
from tests.conftest import require_service

# The reference contract lives beside the checkout (../shared/reference); HPCFLOW_TORC_CONTRACT
# points elsewhere.
REFERENCE = Path(
    os.environ.get(
        "HPCFLOW_TORC_CONTRACT",
        Path(__file__).resolve().parents[3] / "shared/reference/torc-openapi-v0.6.4.yaml",
    )
)
METHODS = ("get", "post", "put", "delete", "patch")


@cache
def contract() -> dict[str, Any]:
    """The reference OpenAPI document."""
    if not REFERENCE.exists():
        require_service(
            f"the torc 0.6.4 contract is not at {REFERENCE} (set HPCFLOW_TORC_CONTRACT)"
        )
    return yaml.safe_load(REFERENCE.read_text())


def contract_operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation of the contract."""
    return [
        (m.upper(), path, op)
        for path, item in contract()["paths"].items()
        for m, op in item.items()
        if m in METHODS
    ]


def model_properties(name: str) -> list[str]:
    """The property names a reference model lists."""
    return list(contract()["components"]["schemas"][name]["properties"])


def test_every_contract_operation_is_served(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    rules = {
        (method, rule.rule): rule.endpoint
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
    }
    ops = contract_operations()
    served, missing = [], []
    for method, path, op in ops:
        endpoint = rules.get((method, re.sub(r"{(\w+)}", r"<\1>", path)))
        if endpoint is None:
            missing.append(f"{method} {path} ({op['operationId']})")
        else:
            assert endpoint.rpartition(".")[2] == op["operationId"], (method, path, endpoint)
            served.append(op)
    print(f"{len(served)}/{len(ops)} operations served")
    assert not missing, missing
    assert len(served) == len(ops) == 136


def test_parameters_match_the_contract() -> None:
    ours = {(o.method, o.path): o for o in OPERATIONS}
    for method, path, op in contract_operations():
        mine = ours[(method, path)]
        params = op.get("parameters", [])
        assert {p["name"] for p in params if p["in"] == "path"} == set(mine.path_params), path
        wanted = {p["name"] for p in params if p["in"] == "query"}
        assert wanted <= {q.name for q in mine.query}, (method, path, wanted)
        body = op.get("requestBody")
        if body and body.get("required"):
            assert mine.body is not None, (method, path, "request body")


def test_example_is_not_captured_by_the_key_route(client: Any) -> None:
    example = client.get("/workflow_specifications/example")
    template = client.get("/workflow_specifications/template")
    assert example.status_code == 200 and example.json["name"] == "diamond"
    assert template.status_code == 200 and template.json["jobs"] == []
    missing = client.get("/workflow_specifications/999")
    assert missing.status_code == 404 and "999" in missing.json["errorMessage"]


def _has_all(doc: dict[str, Any], model: str) -> None:
    absent = [p for p in model_properties(model) if p not in doc]
    assert not absent, f"{model}: missing {absent} in {doc}"


NODE = {
    "hostname": "n1",
    "pid": 7,
    "start_time": "2024-01-01T00:00:00",
    "resources": {"num_cpus": 2, "memory_gb": 4, "num_gpus": 0, "num_nodes": 1},
}


def test_created_documents_carry_every_contract_property(client: Any, workflow: str) -> None:
    base = f"/workflows/{workflow}"

    def post(path: str, body: Any) -> dict[str, Any]:
        resp = client.post(base + path, json=body)
        assert resp.status_code == 200, (path, resp.json)
        return resp.json  # type: ignore[no-any-return]

    _has_all(client.get(base).json, "workflow_model")
    f = post("/files", {"name": "f", "path": "f.txt"})
    _has_all(f, "file_model")
    ud = post("/user_data", {"name": "u", "data": {"a": 1}})
    _has_all(ud, "user_data_model")
    rr = post("/resource_requirements", {"name": "rr", "memory": "2g"})
    _has_all(rr, "resource_requirements_model")
    slurm = post(
        "/slurm_schedulers",
        {"name": "s", "account": "acct", "nodes": 2, "max_nodes": 4, "partition": "debug"},
    )
    _has_all(slurm, "slurm_scheduler_model")
    assert slurm["max_nodes"] == 4  # hpcflow extension fields come back too
    _has_all(post("/local_schedulers", {"name": "l", "num_cpus": 2}), "local_scheduler_model")
    _has_all(
        post("/aws_schedulers", {"name": "a", "instance_type": "t3.micro"}), "aws_scheduler_model"
    )
    job = post(
        "/jobs",
        {
            "name": "j",
            "command": "echo",
            "input_files": [f["_id"]],
            "resource_requirements": rr["_id"],
            "scheduler": slurm["_id"],
        },
    )
    _has_all(job, "job_model")
    result = post(
        "/results",
        {
            "job_key": job["_key"],
            "run_id": 0,
            "return_code": 0,
            "exec_time_minutes": 0.1,
            "completion_time": "now",
            "status": "done",
        },
    )
    _has_all(result, "result_model")
    event = post("/events", {"category": "job", "message": "hello"})
    assert {"timestamp", "category", "message", "_key", "_id", "_rev"} <= set(event)
    node = post("/compute_nodes", NODE)
    _has_all(node, "compute_node_model")
    _has_all(node["resources"], "compute_nodes_resources")
    _has_all(
        post("/compute_node_stats", {"hostname": "n1", "stats": [], "timestamp": "now"}),
        "compute_node_stats_model",
    )
    stats = post(
        "/job_process_stats",
        {
            "job_key": job["_key"],
            "run_id": 0,
            "avg_cpu_percent": 1,
            "max_cpu_percent": 2,
            "avg_rss": 3,
            "max_rss": 4,
            "num_samples": 1,
            "timestamp": "now",
        },
    )
    _has_all(stats, "job_process_stats_model")
    _has_all(
        post(
            "/scheduled_compute_nodes", {"scheduler_config_id": slurm["_id"], "status": "pending"}
        ),
        "scheduled_compute_nodes_model",
    )
    _has_all(post("/edges/process_used", {"_from": job["_id"], "_to": stats["_id"]}), "edge_model")
    _has_all(client.get(base + "/config").json, "workflow_config_model")
    _has_all(client.get(base + "/status").json, "workflow_status_model")
    _has_all(
        client.get(f"/workflow_specifications/{workflow}").json, "workflow_specification_model"
    )
    _has_all(client.get(f"{base}/job_specifications/{job['_key']}").json, "job_specification_model")


def test_created_specification_carries_every_contract_property(client: Any) -> None:
    created = client.post(
        "/workflow_specifications", json=client.get("/workflow_specifications/example").json
    )
    assert created.status_code == 200, created.json
    _has_all(created.json, "workflow_model")
    spec = client.get(f"/workflow_specifications/{created.json['_key']}").json
    _has_all(spec, "workflow_specification_model")
    for job in spec["jobs"]:
        _has_all(job, "job_specification_model")
    for name, model in (
        ("files", "file_model"),
        ("user_data", "user_data_model"),
        ("resource_requirements", "resource_requirements_model"),
    ):
        for doc in spec[name]:
            wanted = [p for p in model_properties(model) if not p.startswith("_")]
            assert set(wanted) <= set(doc), (name, doc)


def test_openapi_document_references_resolve(client: Any) -> None:
    doc = client.get("/openapi.json").json
    schemas = doc["components"]["schemas"]
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.update(v for k, v in node.items() if k == "$ref")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert not [r for r in refs if r.rpartition("/")[2] not in schemas]
    body = doc["paths"]["/workflow_specifications"]["post"]["requestBody"]
    spec = schemas[body["content"]["application/json"]["schema"]["$ref"].rpartition("/")[2]]
    assert {"jobs", "files", "schedulers", "config", "user"} <= set(spec["properties"])
