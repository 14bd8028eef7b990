"""Bad input: a clear 400/404/409/422 naming the culprit, nothing written, never a 500."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hpcflow.api.registry import OPERATIONS
from tests.conftest import row_counts


@pytest.fixture
def diamond(client: Any) -> dict[str, str]:
    """A stored diamond: the workflow key and one key of each kind, by name."""
    spec = client.get("/workflow_specifications/example").json
    wf = client.post("/workflow_specifications", json=spec).json["_key"]
    client.post(f"/workflows/{wf}/initialize_jobs")
    keys = {"wf": wf}
    for coll in ("jobs", "files", "user_data", "resource_requirements"):
        doc = client.get(f"/workflows/{wf}/{coll}").json["items"][0]
        keys[coll] = doc["_key"]
    return keys


def _fill(path: str, value: str) -> str:
    return re.sub(r"{\w+}", value, path)


@pytest.mark.parametrize("value", ["99999", "abc", "-1", "1e400"])
def test_no_operation_answers_500_to_unknown_keys(
    client: Any, backend: Any, diamond: dict[str, str], value: str
) -> None:
    before = row_counts(backend)
    for op in OPERATIONS:
        if not op.path_params:
            continue
        path = _fill(op.path, value)
        resp = client.open(path, method=op.method, json={})
        assert resp.status_code < 500, (op.method, path, resp.json)
        assert resp.status_code in (400, 404, 409, 422), (op.method, path, resp.status_code)
        assert resp.json["errorMessage"], (op.method, path)
    assert row_counts(backend) == before


def test_no_operation_answers_500_to_malformed_bodies(
    client: Any, backend: Any, diamond: dict[str, str]
) -> None:
    before = row_counts(backend)
    wf = diamond["wf"]
    for op in OPERATIONS:
        if op.body is None:
            continue
        path = _fill(op.path.replace("{workflow}", wf).replace("{key}", wf), diamond["jobs"])
        for raw in ('{"a": ', "[1, 2", "\xff\xfe", "nul"):
            resp = client.open(path, method=op.method, data=raw, content_type="application/json")
            assert resp.status_code == 400, (op.method, path, raw, resp.json)
            assert "not valid JSON" in resp.json["errorMessage"]
    assert row_counts(backend) == before
    for op in OPERATIONS:
        if op.body is None:
            continue
        path = _fill(op.path.replace("{workflow}", wf).replace("{key}", wf), diamond["jobs"])
        # (Events are free-form, so a stray field is stored there; everything else refuses.)
        for body in ([], "text", 5, {"__unknown__": 1}):
            resp = client.open(path, method=op.method, json=body)
            assert resp.status_code < 500, (op.method, path, body, resp.json)


CASES: list[tuple[str, str, Any, int, str]] = [
    # method, path ({wf}, {job}, {file}, {rr} filled in), JSON body, status, message part
    ("POST", "/workflows", {"name": "no user"}, 422, "user: Field required"),
    ("POST", "/workflows", {"user": 5}, 422, "user"),
    ("POST", "/workflows/{wf}/files", {"name": "f"}, 422, "path: Field required"),
    ("POST", "/workflows/{wf}/files", {"path": ["a"]}, 422, "path"),
    ("POST", "/workflows/{wf}/resource_requirements", {"num_cpus": "many"}, 422, "num_cpus"),
    ("POST", "/workflows/{wf}/resource_requirements", {"memory": "5 bananas"}, 422, "memory"),
    (
        "POST",
        "/workflows/{wf}/jobs",
        {"command": "x", "input_files": ["files/99999"]},
        422,
        "files/99999 does not exist",
    ),
    ("POST", "/workflows/{wf}/jobs", {"name": "no command"}, 422, "command: Field required"),
    (
        "POST",
        "/workflows/{wf}/bulk_jobs",
        {"jobs": [{"command": "x", "blocked_by": ["q"]}]},
        422,
        "blocked_by",
    ),
    ("POST", "/workflows/99999/jobs", {"command": "x"}, 404, "workflow '99999' not found"),
    ("GET", "/workflows/{wf}/jobs/99999", None, 404, "jobs '99999' not found"),
    ("GET", "/workflows/{wf}/jobs?skip=-1", None, 422, "skip must be a whole number"),
    ("GET", "/workflows/{wf}/jobs?skip=1e30", None, 422, "skip"),
    ("GET", "/workflows/{wf}/jobs?limit=-5", None, 422, "limit must be a whole number"),
    ("GET", "/workflows/{wf}/jobs?limit=100000000", None, 422, "limit"),
    ("GET", "/workflows/{wf}/jobs?limit=ten", None, 400, "'limit' must be a float"),
    ("GET", "/workflows/{wf}/jobs?sort_by=colour", None, 422, "cannot sort by 'colour'"),
    ("GET", "/workflows/{wf}/edges/blocks?skip=-1", None, 422, "skip"),
    ("GET", "/workflows/{wf}/edges/blocks?limit=1e12", None, 422, "limit"),
    ("GET", "/workflows/{wf}/job_specifications?limit=-1", None, 422, "limit"),
    ("GET", "/workflows/{wf}/jobs/find_by_status/ready?skip=2.5", None, 422, "skip"),
    ("GET", "/workflows/{wf}/downstream_jobs/{job}?limit=-1", None, 422, "limit"),
    ("GET", "/workflows/{wf}/files/produced_by_job/{job}?skip=x", None, 400, "skip"),
    ("GET", "/workflows/{wf}/jobs/find_by_needs_file/{file}?limit=1e9", None, 422, "limit"),
    ("GET", "/workflows/{wf}/events_after_timestamp/0?limit=-1", None, 422, "limit"),
    ("POST", "/workflows/{wf}/join_by_inbound_edge/files/needs?skip=-3", {}, 422, "skip"),
    (
        "PUT",
        "/workflows/{wf}/jobs/{job}/resource_requirements/99999",
        None,
        404,
        "resource_requirements '99999' not found",
    ),
    ("PUT", "/workflows/{wf}/jobs/99999/resource_requirements/{rr}", None, 404, "jobs"),
    (
        "POST",
        "/workflows/{wf}/edges/blocks",
        {"_from": "jobs/{job}", "_to": "jobs/99999"},
        422,
        "jobs/99999 does not exist",
    ),
    (
        "POST",
        "/workflows/{wf}/edges/needs",
        {"_from": "jobs/{job}", "_to": "user_data/1"},
        422,
        "must reference files",
    ),
    ("DELETE", "/workflows/{wf}/edges/needs/99999", None, 404, "needs edge '99999' not found"),
    (
        "POST",
        "/workflows/{wf}/jobs/{job}/user_data",
        {"is_ephemeral": "sometimes"},
        422,
        "is_ephemeral",
    ),
    (
        "POST",
        "/workflow_specifications",
        {"user": "u", "jobs": [{"command": "x", "input_files": ["f9"]}]},
        422,
        "jobs[0].input_files: no file named 'f9'",
    ),
    (
        "POST",
        "/workflow_specifications",
        {"user": "u", "jobs": [{"command": "x", "resource_requirements": "huge"}]},
        422,
        "no resource requirements",
    ),
    (
        "POST",
        "/workflow_specifications",
        {"user": "u", "jobs": [{"command": "x", "scheduler": "slurm_schedulers/s"}]},
        422,
        "no slurm_schedulers",
    ),
    (
        "POST",
        "/workflow_specifications",
        {"user": "u", "jobs": [{"name": "a", "command": "x", "blocked_by": ["b"]}]},
        422,
        "no job named 'b'",
    ),
    (
        "POST",
        "/workflow_specifications",
        {"user": "u", "jobs": [{"command": 7}]},
        422,
        "jobs[0].command",
    ),
    ("GET", "/workflow_specifications/abc", None, 404, "workflow 'abc' not found"),
]


def test_bad_requests_name_the_culprit_and_change_nothing(
    client: Any, backend: Any, diamond: dict[str, str]
) -> None:
    before = row_counts(backend)
    subs = {
        "{wf}": diamond["wf"],
        "{job}": diamond["jobs"],
        "{file}": diamond["files"],
        "{rr}": diamond["resource_requirements"],
    }

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            for k, v in subs.items():
                value = value.replace(k, v)
            return value
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    for method, path, body, status, message in CASES:
        resp = client.open(fill(path), method=method, json=fill(body))
        assert resp.status_code == status, (method, path, resp.status_code, resp.json)
        assert message in resp.json["errorMessage"], (path, message, resp.json["errorMessage"])
        assert resp.json["code"] == status and resp.json["error"]["message"]
    assert row_counts(backend) == before
