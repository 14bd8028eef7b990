"""POST/GET /workflow_specifications: whole workflows by name, in one transaction."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

from hpcflow.spec import load_spec
from tests.conftest import row_counts

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

from generate_large import large_spec  # noqa: E402


def post_spec(client: Any, spec: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    resp = client.post("/workflow_specifications", json=spec)
    assert resp.status_code == expect, resp.json
    return resp.json  # type: ignore[no-any-return]


def by_id(client: Any, wf: str, collection: str) -> dict[str, dict[str, Any]]:
    items = client.get(f"/workflows/{wf}/{collection}").json["items"]
    return {d["_id"]: d for d in items}


@pytest.mark.parametrize("name", ["diamond.json5", "diamond.yaml"])
def test_diamond_example_loads_with_references_resolved(client: Any, name: str) -> None:
    spec = {"user": "tester", **load_spec(EXAMPLES / "diamond" / name)}
    wf = post_spec(client, spec)["_key"]
    jobs = {j["name"]: j for j in client.get(f"/workflows/{wf}/jobs").json["items"]}
    assert sorted(jobs) == ["postprocess", "preprocess", "work1", "work2"]
    files = by_id(client, wf, "files")
    user_data = by_id(client, wf, "user_data")
    rrs = by_id(client, wf, "resource_requirements")
    work1 = jobs["work1"]
    assert sorted(files[f]["name"] for f in work1["input_files"]) == ["f1", "work_script"]
    assert [files[f]["path"] for f in work1["output_files"]] == ["output/diamond/f3.json"]
    assert [user_data[u]["data"] for u in work1["input_user_data"]] == [{"scale": 2}]
    assert rrs[work1["resource_requirements"]]["name"] == "medium"
    assert work1["internal"]["memory_bytes"] == 1024**3
    assert work1["internal"]["runtime_seconds"] == 600
    post = jobs["postprocess"]
    assert [user_data[u]["name"] for u in post["output_user_data"]] == ["summary"]
    assert sorted(files[f]["name"] for f in post["input_files"]) == [
        "f3",
        "f4",
        "postprocess_script",
    ]
    assert {j["status"] for j in jobs.values()} == {"uninitialized"}
    config = client.get(f"/workflows/{wf}/config").json
    assert config["compute_node_resource_stats"]["interval"] == 1
    init = client.post(f"/workflows/{wf}/initialize_jobs").json
    assert (init["num_ready"], init["num_blocked"]) == (1, 3)


def test_example_route_is_the_diamond_example_file(client: Any) -> None:
    example = client.get("/workflow_specifications/example").json
    assert example.pop("user") == "hpcflow"
    assert example == load_spec(EXAMPLES / "diamond" / "diamond.json5")
    assert load_spec(EXAMPLES / "diamond" / "diamond.yaml") == example


def test_template_is_empty_and_valid(client: Any) -> None:
    template = client.get("/workflow_specifications/template").json
    assert template["jobs"] == [] and template["files"] == []
    assert set(template["schedulers"]) == {"aws_schedulers", "local_schedulers", "slurm_schedulers"}
    assert template["config"]["prepare_jobs_sort_method"] == "gpus_runtime_memory"
    wf = post_spec(client, {**template, "user": "me", "name": "empty"})["_key"]
    assert client.get(f"/workflows/{wf}/jobs").json["total_count"] == 0


FULL: dict[str, Any] = {
    "name": "full",
    "user": "tester",
    "description": "every section",
    "config": {
        "max_retries": 5,
        "compute_node_wait_for_new_jobs_seconds": 30,
        "compute_node_resource_stats": {"cpu": True, "interval": 2},
    },
    "files": [
        {"name": "in", "path": "in.txt", "st_mtime": 12.5},
        {"name": "mid", "path": "mid.txt"},
        {"name": "out", "path": "out.txt"},
    ],
    "user_data": [
        {"name": "params", "data": {"x": 1}},
        {"name": "scratch", "is_ephemeral": True, "data": None},
    ],
    "resource_requirements": [
        {"name": "small", "num_cpus": 1, "memory": "1g", "runtime": "P0DT1H"},
        {"name": "gpu", "num_cpus": 4, "num_gpus": 1, "memory": "8g", "runtime": "P0DT2H"},
    ],
    "schedulers": {
        "slurm_schedulers": [
            {
                "name": "debug",
                "account": "acct",
                "nodes": 2,
                "partition": "debug",
                "walltime": "01:00:00",
                "max_nodes": 3,
                "template": "#SBATCH --foo",
            }
        ],
        "local_schedulers": [{"name": "here", "num_cpus": 2, "memory": "4g"}],
        "aws_schedulers": [
            {
                "name": "cloud",
                "instance_type": "t3.micro",
                "spot": True,
                "tags": {"team": "hpc"},
                "security_group_ids": ["sg-1"],
            }
        ],
    },
    "jobs": [
        {
            "name": "a",
            "command": "prep",
            "input_files": ["in"],
            "output_files": ["mid"],
            "input_user_data": ["params"],
            "resource_requirements": "small",
            "scheduler": "slurm_schedulers/debug",
            "priority": 5,
        },
        {
            "name": "b",
            "command": "train",
            "input_files": ["mid"],
            "output_files": ["out"],
            "output_user_data": ["scratch"],
            "resource_requirements": "gpu",
            "scheduler": "cloud",
            "schedule_compute_nodes": {"num_jobs": 1, "scheduler_id": "aws_schedulers/cloud"},
            "supports_termination": True,
        },
        {
            "name": "c",
            "command": "report",
            "blocked_by": ["a", "b"],
            "cancel_on_blocking_job_failure": False,
            "invocation_script": "bash -l",
        },
    ],
}


def test_full_spec_round_trips_by_name(client: Any) -> None:
    wf = post_spec(client, FULL)["_key"]
    spec = client.get(f"/workflow_specifications/{wf}").json
    assert spec["key"] == wf and spec["user"] == "tester"
    jobs = {j["name"]: j for j in spec["jobs"]}
    assert jobs["a"]["input_files"] == ["in"] and jobs["a"]["scheduler"] == "slurm_schedulers/debug"
    assert jobs["a"]["priority"] == 5 and jobs["a"]["input_user_data"] == ["params"]
    assert jobs["b"]["scheduler"] == "aws_schedulers/cloud"
    assert jobs["b"]["schedule_compute_nodes"]["scheduler_id"] == "aws_schedulers/cloud"
    assert jobs["c"]["blocked_by"] == ["a", "b"] and jobs["c"]["invocation_script"] == "bash -l"
    assert jobs["c"]["cancel_on_blocking_job_failure"] is False
    slurm = spec["schedulers"]["slurm_schedulers"][0]
    assert slurm["max_nodes"] == 3 and slurm["template"] == "#SBATCH --foo"
    aws = spec["schedulers"]["aws_schedulers"][0]
    assert aws["tags"] == {"team": "hpc"} and aws["security_group_ids"] == ["sg-1"]
    assert spec["config"]["max_retries"] == 5
    assert spec["files"][0] == {"name": "in", "path": "in.txt", "st_mtime": 12.5}
    # The stored jobs point at real documents: the scheduler's _id and the claim numbers.
    stored = {j["name"]: j for j in client.get(f"/workflows/{wf}/jobs").json["items"]}
    slurm_id = client.get(f"/workflows/{wf}/slurm_schedulers").json["items"][0]["_id"]
    assert stored["a"]["scheduler"] == slurm_id
    assert stored["a"]["internal"]["scheduler_config_id"] == slurm_id
    assert stored["b"]["internal"]["num_gpus"] == 1
    assert stored["b"]["schedule_compute_nodes"]["scheduler_id"].startswith("aws_schedulers/")
    # Without the keys the rendered spec is a new workflow that renders the same.
    again = {k: v for k, v in spec.items() if k != "key"}
    again["jobs"] = [{k: v for k, v in j.items() if k != "key"} for j in spec["jobs"]]
    wf2 = post_spec(client, again)["_key"]
    spec2 = client.get(f"/workflow_specifications/{wf2}").json
    strip = lambda s: {**s, "key": None, "jobs": [{**j, "key": None} for j in s["jobs"]]}  # noqa: E731
    assert strip(spec2) == strip(spec)


def test_unnamed_and_duplicate_names_render_as_ids(client: Any, workflow: str) -> None:
    base = f"/workflows/{workflow}"
    f1 = client.post(base + "/files", json={"path": "x"}).json["_id"]
    f2 = client.post(base + "/files", json={"name": "dup", "path": "y"}).json["_id"]
    f3 = client.post(base + "/files", json={"name": "dup", "path": "z"}).json["_id"]
    first = client.post(base + "/jobs", json={"command": "one", "input_files": [f1, f2]}).json
    client.post(
        base + "/jobs",
        json={"name": "two", "command": "two", "input_files": [f3], "blocked_by": [first["_id"]]},
    )
    spec = client.get(f"/workflow_specifications/{workflow}").json
    names = {f["path"]: f["name"] for f in spec["files"]}
    assert names == {"x": f1, "y": f2, "z": f3}  # '<collection>/<key>' stands in
    jobs = {j["command"]: j for j in spec["jobs"]}
    assert jobs["one"]["name"] == first["_id"] and jobs["two"]["blocked_by"] == [first["_id"]]
    assert sorted(jobs["one"]["input_files"]) == sorted([f1, f2])
    copy_ = {**spec, "key": None, "jobs": [{**j, "key": None} for j in spec["jobs"]]}
    wf2 = post_spec(client, copy_)["_key"]
    assert client.get(f"/workflows/{wf2}/jobs").json["total_count"] == 2


def test_explicit_keys_are_honoured_and_clashes_are_409(client: Any, backend: Any) -> None:
    created = post_spec(
        client,
        {
            "user": "u",
            "key": "500",
            "jobs": [{"name": "a", "command": "x", "key": "900"}, {"name": "b", "command": "y"}],
        },
    )
    assert created["_key"] == "500"
    keys = client.get("/workflows/500/job_keys").json["items"]
    assert keys[0] == "900" and int(keys[1]) > 900
    later = client.post("/workflows/500/jobs", json={"command": "z"}).json
    assert int(later["_key"]) > 901  # the sequence moved past the explicit keys
    before = row_counts(backend)
    clash = post_spec(client, {"user": "u", "key": "500"}, expect=409)
    assert "500" in clash["errorMessage"]
    clash = post_spec(client, {"user": "u", "jobs": [{"command": "x", "key": "900"}]}, expect=409)
    assert "900" in clash["errorMessage"]
    assert row_counts(backend) == before


BAD_SPECS = [
    (
        {"jobs": [{"name": "a", "command": "x", "input_files": ["f9"]}]},
        "jobs[0].input_files: no file named 'f9'",
    ),
    (
        {
            "files": [{"name": "f", "path": "p"}],
            "jobs": [{"name": "a", "command": "x", "output_files": ["f", "nope"]}],
        },
        "jobs[0].output_files: no file named 'nope'",
    ),
    (
        {"jobs": [{"name": "a", "command": "x", "resource_requirements": "big"}]},
        "jobs[0].resource_requirements: no resource requirements named 'big'",
    ),
    (
        {"jobs": [{"name": "a", "command": "x", "scheduler": "slurm_schedulers/gpu"}]},
        "jobs[0].scheduler: no slurm_schedulers scheduler named 'gpu'",
    ),
    (
        {"jobs": [{"name": "a", "command": "x", "scheduler": "gpu"}]},
        "jobs[0].scheduler: no scheduler named 'gpu'",
    ),
    (
        {
            "schedulers": {
                "slurm_schedulers": [{"name": "s", "account": "a"}],
                "local_schedulers": [{"name": "s"}],
            },
            "jobs": [{"command": "x", "scheduler": "s"}],
        },
        "write e.g. 'slurm_schedulers/s'",
    ),
    (
        {
            "jobs": [
                {
                    "name": "a",
                    "command": "x",
                    "schedule_compute_nodes": {"num_jobs": 1, "scheduler_id": "missing"},
                }
            ]
        },
        "jobs[0].schedule_compute_nodes.scheduler_id: no scheduler named 'missing'",
    ),
    (
        {
            "jobs": [
                {"name": "a", "command": "x"},
                {"name": "b", "command": "y", "blocked_by": ["a", "zz"]},
            ]
        },
        "jobs[1].blocked_by: no job named 'zz'",
    ),
    (
        {"jobs": [{"name": "a", "command": "x", "input_user_data": ["nothing"]}]},
        "jobs[0].input_user_data: no user data named 'nothing'",
    ),
    (
        {"jobs": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]},
        "jobs[1].name: duplicate name 'a' (also jobs[0])",
    ),
    (
        {"files": [{"name": "f", "path": "1"}, {"name": "f", "path": "2"}]},
        "files[1].name: duplicate name 'f'",
    ),
    (
        {"jobs": [{"name": "a", "command": "x", "blocked_by": ["a"]}]},
        "jobs[0].blocked_by: a job cannot block itself",
    ),
    (
        {
            "jobs": [
                {"name": "a", "command": "x", "blocked_by": ["c"]},
                {"name": "b", "command": "y", "blocked_by": ["a"]},
                {"name": "c", "command": "z", "blocked_by": ["b"]},
            ]
        },
        "dependency cycle: job 'a' -> job 'b' -> job 'c' -> job 'a'",
    ),
    (
        {
            "files": [{"name": "f", "path": "p"}, {"name": "g", "path": "q"}],
            "jobs": [
                {"name": "a", "command": "x", "input_files": ["g"], "output_files": ["f"]},
                {"name": "b", "command": "y", "input_files": ["f"], "output_files": ["g"]},
            ],
        },
        "dependency cycle",
    ),
    (
        {
            "files": [{"name": "f", "path": "p"}],
            "jobs": [
                {"name": "a", "command": "x", "output_files": ["f"]},
                {"name": "b", "command": "y", "output_files": ["f"]},
            ],
        },
        "jobs[1].output_files: file 'f' is already produced by job 'a'",
    ),
    ({"jobs": [{"name": "a"}]}, "jobs[0].command: Field required"),
    ({"jobs": [{"name": "a", "command": ""}]}, "jobs[0].command: String should have at least"),
    (
        {"jobs": [{"name": "a", "command": "x", "input_files": "f"}]},
        "jobs[0].input_files: Input should be a valid list",
    ),
    (
        {"jobs": [{"name": "a", "command": "x", "status": "done"}]},
        "jobs[0].status: Extra inputs are not permitted",
    ),
    ({"jobs": [{"name": "a", "command": "x", "priority": 10**9}]}, "jobs[0].priority"),
    (
        {"resource_requirements": [{"name": "r", "memory": "lots"}]},
        "resource_requirements[0].memory",
    ),
    (
        {"schedulers": {"slurm_schedulers": [{"name": "s"}]}},
        "schedulers.slurm_schedulers[0].account: Field required",
    ),
    ({"config": {"max_retries": -1}}, "config.max_retries"),
    ({"jobs": [{"name": "a", "command": "x", "key": "abc"}]}, "jobs[0].key: 'abc' is not a key"),
    ({"bogus": 1}, "bogus: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_SPECS, ids=[m[:40] for _s, m in BAD_SPECS])
def test_bad_specs_name_the_culprit_and_write_nothing(
    client: Any, backend: Any, extra: dict[str, Any], message: str
) -> None:
    before = row_counts(backend)
    resp = client.post("/workflow_specifications", json={"user": "u", **extra})
    assert resp.status_code == 422, resp.json
    assert message in resp.json["errorMessage"], resp.json["errorMessage"]
    assert row_counts(backend) == before


def test_every_problem_is_listed_with_a_count(client: Any, backend: Any) -> None:
    spec = {
        "user": "u",
        "jobs": [{"name": f"j{i}", "command": "x", "input_files": [f"f{i}"]} for i in range(50)],
    }
    resp = client.post("/workflow_specifications", json=spec)
    assert resp.status_code == 422
    details = resp.json["error"]["details"]
    assert details["num_errors"] == 50 and len(details["errors"]) == 20
    assert "and 49 more problems" in resp.json["errorMessage"]
    assert resp.json["error"]["field"] == "jobs[0].input_files"


def test_missing_user_and_non_object_bodies(client: Any, backend: Any) -> None:
    before = row_counts(backend)
    missing = client.post("/workflow_specifications", json={"name": "x"})
    assert missing.status_code == 422 and "user: Field required" in missing.json["errorMessage"]
    listed = client.post("/workflow_specifications", json=[1, 2])
    assert listed.status_code == 422 and "body" in listed.json["errorMessage"]
    broken = client.post(
        "/workflow_specifications", data="{name: ", content_type="application/json"
    )
    assert broken.status_code == 400 and "not valid JSON" in broken.json["errorMessage"]
    assert row_counts(backend) == before


def test_generated_large_spec_loads_and_initializes(client: Any) -> None:
    spec = {"user": "u", **large_spec(2000, width=50)}
    wf = post_spec(client, spec)["_key"]
    assert client.get(f"/workflows/{wf}/jobs?limit=0").json["total_count"] == 2000
    produces = client.get(f"/workflows/{wf}/edges/produces?limit=0").json["total_count"]
    needs = client.get(f"/workflows/{wf}/edges/needs?limit=0").json["total_count"]
    assert (produces, needs) == (2000, 1950)
    init = client.post(f"/workflows/{wf}/initialize_jobs").json
    assert (init["num_ready"], init["num_blocked"]) == (50, 1950)
    chained = large_spec(300, width=100, deps="blocked_by")
    wf2 = post_spec(client, {"user": "u", **chained})["_key"]
    init = client.post(f"/workflows/{wf2}/initialize_jobs").json
    assert (init["num_ready"], init["num_blocked"]) == (100, 200)


def test_job_specifications_are_paged_views_of_stored_jobs(client: Any) -> None:
    wf = post_spec(client, copy.deepcopy(FULL))["_key"]
    page = client.get(f"/workflows/{wf}/job_specifications?skip=1&limit=1").json
    assert page["total_count"] == 3 and page["count"] == 1 and page["has_more"] is True
    assert page["items"][0]["name"] == "b"
    assert page["items"][0]["output_user_data"] == ["scratch"]
    key = client.get(f"/workflows/{wf}/job_keys").json["items"][2]
    one = client.get(f"/workflows/{wf}/job_specifications/{key}").json
    assert one["name"] == "c" and one["blocked_by"] == ["a", "b"] and one["key"] == key
    assert client.get(f"/workflows/{wf}/job_specifications/999999").status_code == 404


def test_large_inserts_leave_planner_statistics(client: Any, backend: Any) -> None:
    from sqlalchemy import text

    from hpcflow.engine.bulk import _known_rows

    wf = post_spec(client, {"user": "u", **large_spec(1500, width=10)})["_key"]
    with backend.connect() as conn:
        from sqlalchemy.orm import Session

        session = Session(bind=conn)
        edges = _known_rows(session, "edges")
        if backend.dialect.name == "sqlite":
            assert (
                conn.execute(
                    text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'edges'")
                ).scalar_one()
                > 0
            )
    # Without them initialize_jobs joins edges to edges quadratically (minutes at 100,000).
    assert edges is not None and edges >= 2990
    init = client.post(f"/workflows/{wf}/initialize_jobs").json
    assert init["num_blocked"] == 1490
