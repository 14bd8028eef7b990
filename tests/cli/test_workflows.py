"""`hpcflow workflows|jobs|events` against a real server: tables, JSON, and error paths."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpcflow.cli.main import cli
from hpcflow.client import Client
from tests.cli.conftest import Invoke
from tests.runner.conftest import build, jobs_by_name, py

needs_specs = pytest.mark.skipif(
    importlib.util.find_spec("hpcflow.api.specifications") is None,
    reason="POST /workflow_specifications (hpcflow/api/specifications.py) is not written yet",
)


def table_rows(output: str) -> list[list[str]]:
    """The body rows of rich tables in `output`, as stripped cells."""
    return [
        [c.strip() for c in line.split("│")[1:-1]]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def diamond(api: Client, *, initialize: bool = True) -> tuple[str, dict[str, str]]:
    return build(
        api,
        [
            {
                "name": "prep",
                "command": py("print(1)"),
                "cpus": 2,
                "memory": "1g",
                "runtime": "P0DT1H",
            },
            {"name": "left", "command": py("print(2)"), "blocked_by": ["prep"]},
            {"name": "right", "command": py("print(3)"), "blocked_by": ["prep"]},
        ],
        initialize=initialize,
    )


def test_workflows_list_table_json_and_filters(api: Client, hpcflow: Invoke) -> None:
    a = api.post("/workflows", {"user": "alice", "name": "sweep", "description": "first"})
    b = api.post("/workflows", {"user": "bob", "name": "render"})
    c = api.post("/workflows", {"user": "alice", "name": "old", "is_archived": True})

    result = hpcflow("workflows", "list")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert [r[:3] for r in rows] == [
        [a["_key"], "sweep", "alice"],
        [b["_key"], "render", "bob"],
        [c["_key"], "old", "alice"],
    ]
    assert rows[0][3] == "first" and rows[2][5] == "True"

    result = hpcflow("workflows", "list", "--user", "alice", "-o", "json")
    assert result.exit_code == 0, result.output
    docs = json.loads(result.output)
    assert [d["_key"] for d in docs] == [a["_key"], c["_key"]]
    assert docs[0] == a  # the full documents, as the server stores them

    archived = json.loads(hpcflow("workflows", "list", "--archived", "-o", "json").output)
    assert [d["name"] for d in archived] == ["old"]
    active = json.loads(hpcflow("workflows", "list", "--not-archived", "-o", "json").output)
    assert [d["name"] for d in active] == ["sweep", "render"]
    named = json.loads(hpcflow("workflows", "list", "--name", "render", "-o", "json").output)
    assert [d["user"] for d in named] == ["bob"]
    first = json.loads(hpcflow("workflows", "list", "--limit", "2", "-o", "json").output)
    assert [d["name"] for d in first] == ["sweep", "render"]


def test_workflows_show_and_status(api: Client, hpcflow: Invoke) -> None:
    wf, _keys = diamond(api)
    result = hpcflow("workflows", "show", wf, "-o", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["workflow"]["_key"] == wf and doc["workflow"]["user"] == "tester"
    assert doc["config"]["prepare_jobs_sort_method"] == "gpus_runtime_memory"
    assert doc["status"]["is_canceled"] is False
    assert doc["job_counts"] == {"ready": 1, "blocked": 2}

    result = hpcflow("workflows", "show", wf)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert ["ready", "1"] in rows and ["blocked", "2"] in rows and ["total", "3"] in rows
    assert ["name", "runner-test"] in rows and ["user", "tester"] in rows
    assert ["max_retries", "3"] in rows and ["is_canceled", "False"] in rows

    status = json.loads(hpcflow("workflows", "status", wf, "-o", "json").output)
    assert status == {
        "workflow": wf,
        "job_counts": {"ready": 1, "blocked": 2},
        "total": 3,
        "is_complete": False,
        "is_canceled": False,
    }
    result = hpcflow("workflows", "status", wf)
    assert "complete: no; canceled: no" in result.output
    assert ["blocked", "2"] in table_rows(result.output)


def test_workflows_start_cancel_delete(api: Client, hpcflow: Invoke) -> None:
    wf, _keys = diamond(api, initialize=False)
    assert {j["status"] for j in jobs_by_name(api, wf).values()} == {"uninitialized"}

    result = hpcflow("workflows", "start", wf)
    assert result.exit_code == 0, result.output
    assert f"started workflow {wf}: 1 ready, 2 blocked" in result.output
    assert {n: j["status"] for n, j in jobs_by_name(api, wf).items()} == {
        "prep": "ready",
        "left": "blocked",
        "right": "blocked",
    }

    result = hpcflow("workflows", "cancel", wf)
    assert result.exit_code == 0, result.output
    assert "3 unfinished jobs canceled" in result.output
    assert {j["status"] for j in jobs_by_name(api, wf).values()} == {"canceled"}
    status = json.loads(hpcflow("workflows", "status", wf, "-o", "json").output)
    assert status["is_complete"] is True and status["is_canceled"] is True

    result = hpcflow("workflows", "delete", wf, input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert api.get(f"/workflows/{wf}")["_key"] == wf  # still there

    result = hpcflow("workflows", "delete", wf, input="y\n")
    assert result.exit_code == 0 and f"deleted workflow {wf}" in result.output
    other = api.post("/workflows", {"user": "u", "name": "x"})["_key"]
    assert hpcflow("workflows", "delete", other, "--yes").exit_code == 0
    assert api.get("/workflows")["items"] == []


def test_jobs_list_table_json_status_and_limit(api: Client, hpcflow: Invoke) -> None:
    wf, keys = diamond(api)
    result = hpcflow("jobs", "list", wf)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "command" in line)
    for column in ("key", "name", "status", "command", "cpus", "memory", "runtime", "priority"):
        assert column in header
    rows = {r[1]: r for r in table_rows(result.output)}
    assert rows["prep"][0] == keys["prep"]
    assert rows["prep"][2] == "ready" and rows["prep"][4:8] == ["2", "1 GiB", "P0DT1H", "0"]
    assert rows["left"][2] == "blocked" and rows["left"][4:7] == ["1", "1 MiB", "P0DT1M"]
    assert rows["left"][3]  # the command (rich shortens it to the terminal's width)

    docs = json.loads(hpcflow("jobs", "list", wf, "--status", "blocked", "-o", "json").output)
    assert sorted(d["name"] for d in docs) == ["left", "right"]
    assert docs[0]["blocked_by"] == [f"jobs/{keys['prep']}"]  # full documents
    assert docs[0]["internal"]["memory_bytes"] == 1024**2 and "print(2)" in docs[0]["command"]

    limited = json.loads(hpcflow("jobs", "list", wf, "--limit", "2", "-o", "json").output)
    assert [d["name"] for d in limited] == ["prep", "left"]
    bad = hpcflow("jobs", "list", wf, "--status", "nonsense")
    assert bad.exit_code == 2 and "nonsense" in bad.output


def test_events_list_filters(api: Client, hpcflow: Invoke) -> None:
    wf = api.post("/workflows", {"user": "u", "name": "ev"})["_key"]
    for ts, category, message in [
        (3000, "job", "c"),
        (1000, "job", "a"),
        (2000, "node", "b"),
        (4000, "job", "d"),
    ]:
        api.post(
            f"/workflows/{wf}/events",
            {"timestamp": ts, "category": category, "message": message, "n": ts // 1000},
        )

    result = hpcflow("events", "list", wf)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert [r[3] for r in rows] == ["a", "b", "c", "d"]  # by time
    assert [r[2] for r in rows] == ["job", "node", "job", "job"]
    assert [json.loads(r[4]) for r in rows] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]

    def messages(*args: str) -> list[Any]:
        out = hpcflow("events", "list", wf, *args, "-o", "json")
        assert out.exit_code == 0, out.output
        return [d["message"] for d in json.loads(out.output)]

    assert messages("--category", "job") == ["a", "c", "d"]
    assert messages("--after", "1500") == ["b", "c", "d"]
    assert messages("--after", "1500", "--category", "job") == ["c", "d"]
    assert messages("--after", "1500", "--limit", "1") == ["b"]
    assert messages("--limit", "2") == ["a", "b"]
    assert messages("--after", "4000") == []
    doc = json.loads(hpcflow("events", "list", wf, "--limit", "1", "-o", "json").output)[0]
    assert doc["timestamp"] == 1000 and doc["category"] == "job" and "_key" in doc


@pytest.mark.parametrize(
    "args",
    [
        ("workflows", "show", "987654"),
        ("workflows", "status", "987654"),
        ("workflows", "start", "987654"),
        ("workflows", "cancel", "987654"),
        ("workflows", "delete", "987654", "--yes"),
        ("jobs", "list", "987654"),
        ("events", "list", "987654"),
    ],
)
def test_unknown_workflow_fails_naming_it(hpcflow: Invoke, args: tuple[str, ...]) -> None:
    result = hpcflow(*args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert "987654" in lines[0] and "not found" in lines[0]


def test_unreachable_server_says_where(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"  # discard port: nothing listens there
    for args in (["workflows", "list"], ["jobs", "list", "1"], ["events", "list", "1"]):
        result = CliRunner().invoke(cli, [*args, "--url", url])
        assert result.exit_code == 1
        assert result.output.startswith(f"Error: cannot reach the hpcflow server at {url}")
    env = {"HPCFLOW_URL": url}
    result = CliRunner().invoke(cli, ["workflows", "show", "1"], env=env)
    assert result.exit_code == 1 and url in result.output


def test_create_with_unreadable_spec_names_the_file(hpcflow: Invoke, tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: [unclosed\n")
    result = hpcflow("workflows", "create", str(spec))
    assert result.exit_code == 1 and "broken.yaml" in result.output
    assert result.output.startswith("Error:")


SPEC_JSON5 = """{
  // a JSON5 spec: comments, unquoted keys, trailing commas
  name: 'from-json5', description: 'two jobs',
  resource_requirements: [{name: 'small', num_cpus: 1, num_gpus: 0, num_nodes: 1,
                           memory: '10m', runtime: 'P0DT1M'}],
  files: [{name: 'out', path: 'out.txt'}],
  jobs: [
    {name: 'make', command: 'echo make', output_files: ['out'],
     resource_requirements: 'small'},
    {name: 'use', command: 'echo use', input_files: ['out'], resource_requirements: 'small'},
  ],
}
"""

SPEC_YAML = """name: from-yaml
user: carol
jobs:
  - name: one
    command: echo one
  - name: two
    command: echo two
    blocked_by: [one]
"""


@needs_specs
def test_create_from_json5_and_start(api: Client, hpcflow: Invoke, tmp_path: Path) -> None:
    spec = tmp_path / "wf.json5"
    spec.write_text(SPEC_JSON5)
    result = hpcflow("workflows", "create", str(spec), "--user", "dave", "--start")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    wf = api.get(f"/workflows/{key}")
    assert wf["name"] == "from-json5" and wf["user"] == "dave"
    jobs = jobs_by_name(api, key)
    assert {n: j["status"] for n, j in jobs.items()} == {"make": "ready", "use": "blocked"}
    assert jobs["use"]["blocked_by"] == [f"jobs/{jobs['make']['_key']}"]


@needs_specs
def test_create_from_yaml_without_start(api: Client, hpcflow: Invoke, tmp_path: Path) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text(SPEC_YAML)
    result = hpcflow("workflows", "create", str(spec))
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert api.get(f"/workflows/{key}")["user"] == "carol"  # the spec's own user is kept
    assert {j["status"] for j in jobs_by_name(api, key).values()} == {"uninitialized"}
    listed = json.loads(hpcflow("workflows", "list", "--name", "from-yaml", "-o", "json").output)
    assert [d["_key"] for d in listed] == [key]
