"""`hpcflow runner` against a separate server, and `hpcflow run SPEC` on one machine."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner

from hpcflow.cli.runner_cmd import run_cmd, runner_cmd
from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from tests.runner.conftest import build, jobs_by_name, py

needs_specs = pytest.mark.skipif(
    importlib.util.find_spec("hpcflow.api.specifications") is None,
    reason="POST /workflow_specifications (hpcflow/api/specifications.py) is not written yet",
)


def run_spec_cli(spec: Path, tmp_path: Path, *flags: str) -> Any:
    """`hpcflow run SPEC` in-process, its run folder in tmp_path/run, no progress bar."""
    return CliRunner().invoke(
        run_cmd, [str(spec), "--run-dir", str(tmp_path / "run"), "--no-progress", *flags]
    )


def test_runner_command_runs_a_workflow(
    server: EmbeddedServer, api: Client, tmp_path: Path
) -> None:
    wf, _keys = build(
        api,
        [
            {"name": "a", "command": py("print('a')")},
            {"name": "b", "command": py("print('b')"), "blocked_by": ["a"]},
            {"name": "c", "command": py("print('c')"), "blocked_by": ["a"]},
            {"name": "d", "command": py("print('d')"), "blocked_by": ["b", "c"]},
        ],
    )
    result = CliRunner().invoke(
        runner_cmd,
        [
            wf,
            "--url",
            server.url,
            "--num-cpus",
            "2",
            "--memory",
            "2g",
            "--num-gpus",
            "0",
            "--idle-timeout",
            "5",
            "--output-dir",
            str(tmp_path / "out"),
            "--stats-interval",
            "0.1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "runner stopped (complete)" in result.output and "4 done" in result.output
    assert {j["status"] for j in jobs_by_name(api, wf).values()} == {"done"}
    node = api.get(f"/workflows/{wf}/compute_nodes")["items"][0]
    assert node["resources"]["num_cpus"] == 2 and node["resources"]["memory_gb"] == 2.0
    assert len(list((tmp_path / "out").glob("*.o"))) == 4


def test_runner_command_without_a_server_says_why(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        runner_cmd,
        [
            "1",
            "--url",
            "http://127.0.0.1:9",
            "--server-retry-seconds",
            "0.2",
            "--output-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "server_gone" in result.output and "unreachable" in result.output


def diamond_spec(tmp_path: Path, fail: bool = False) -> Path:
    f = {i: str(tmp_path / f"f{i}.txt") for i in range(1, 6)}

    def job(name: str, reads: list[int], writes: list[int], code: str = "") -> dict[str, object]:
        body = "; ".join(
            [f"assert open({f[i]!r}).read() == 'x'" for i in reads]
            + [f"open({f[i]!r}, 'w').write('x')" for i in writes]
            + [code or "0"]
        )
        return {
            "name": name,
            "command": py(body),
            "resource_requirements": "small",
            "input_files": [f"f{i}" for i in reads],
            "output_files": [f"f{i}" for i in writes],
        }

    spec = {
        "name": "diamond",
        "description": "hpcflow run test",
        "files": [{"name": f"f{i}", "path": p} for i, p in f.items()],
        "resource_requirements": [
            {
                "name": "small",
                "num_cpus": 1,
                "num_gpus": 0,
                "num_nodes": 1,
                "memory": "100m",
                "runtime": "P0DT5M",
            }
        ],
        "jobs": [
            job("preprocess", [], [1, 2]),
            job("work1", [1], [3], "import sys; sys.exit(4)" if fail else ""),
            job("work2", [2], [4]),
            job("postprocess", [3, 4], [5]),
        ],
    }
    path = tmp_path / "diamond.json5"
    path.write_text(json.dumps(spec))
    return path


@needs_specs
def test_run_spec_completes_the_diamond(tmp_path: Path) -> None:
    spec = diamond_spec(tmp_path)
    result = run_spec_cli(spec, tmp_path, "--num-cpus", "2", "--memory", "4g")
    assert result.exit_code == 0, result.output
    for name in ("preprocess", "work1", "work2", "postprocess"):
        assert name in result.output
    assert "complete" in result.output and "4 done" in result.output
    assert (tmp_path / "f5.txt").read_text() == "x"
    assert (tmp_path / "run" / "hpcflow.db").exists()
    # The runner was launched by the server's autoscaler through the local submitter, sized
    # by the flags, and is gone (nothing `hpcflow run` started outlives it).
    with sqlite3.connect(tmp_path / "run" / "hpcflow.db") as conn:
        allocations = conn.execute(
            "SELECT scheduler_config_id, status FROM scheduled_compute_nodes"
        ).fetchall()
        configs = conn.execute("SELECT num_cpus, memory FROM local_schedulers").fetchall()
        nodes = conn.execute("SELECT is_active FROM compute_nodes").fetchall()
    assert allocations == [("local_schedulers/1", "completed")]
    assert configs == [(2, "4g")] and nodes == [(0,)]
    assert list((tmp_path / "run" / "nodes" / "local").glob("runner-*.log"))
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or ())
    ]


@needs_specs
def test_run_spec_with_a_failing_job_exits_non_zero(tmp_path: Path) -> None:
    spec = diamond_spec(tmp_path, fail=True)
    result = run_spec_cli(spec, tmp_path)
    assert result.exit_code == 1, result.output
    assert "1 canceled" in result.output and "3 done" in result.output
    assert "2 not successful" in result.output  # work1 failed, postprocess canceled
    assert not (tmp_path / "f5.txt").exists()


def test_run_spec_flow_with_jobs_stored_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything `hpcflow run` does except POST /workflow_specifications (stubbed here)."""
    from hpcflow.runner import local

    def create(api: Client, spec: dict[str, object]) -> str:
        assert spec["name"] == "diamond"
        return build(
            api,
            [
                {
                    "name": "ok",
                    "command": py("x = b'a' * (30 * 1024 * 1024); import time; time.sleep(0.5)"),
                },
                {"name": "bad", "command": py("import sys; sys.exit(3)"), "blocked_by": ["ok"]},
                {"name": "after", "command": py("pass"), "blocked_by": ["bad"]},
            ],
        )[0]

    monkeypatch.setattr(local, "create_workflow", create)
    result = run_spec_cli(diamond_spec(tmp_path), tmp_path, "--stats-interval", "0.05")
    assert result.exit_code == 1, result.output
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
        for line in result.output.splitlines()
        if line.count("│") >= 6
    }
    assert rows["ok"][2:4] == ["done", "0"] and float(rows["ok"][5]) >= 25  # peak MiB
    assert rows["bad"][2:4] == ["done", "3"]
    assert rows["after"][2:4] == ["canceled", ""]
    assert "1 canceled, 2 done; 2 not successful" in result.output
    assert list((tmp_path / "run" / "nodes" / "local" / "jobs").glob("*.o"))


def test_load_spec_formats(tmp_path: Path) -> None:
    from hpcflow.errors import Invalid
    from hpcflow.spec import load_spec

    (tmp_path / "a.json5").write_text("{name: 'x', // comment\n jobs: [],}")
    (tmp_path / "a.yaml").write_text("name: y\njobs: []\n")
    (tmp_path / "a.json").write_text('{"name": "z"}')
    (tmp_path / "bad.json").write_text("[1]")
    assert load_spec(tmp_path / "a.json5")["name"] == "x"
    assert load_spec(tmp_path / "a.yaml")["name"] == "y"
    assert load_spec(tmp_path / "a.json")["name"] == "z"
    with pytest.raises(Invalid, match="mapping"):
        load_spec(tmp_path / "bad.json")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(Invalid, match=r"broken\.yaml"):
        load_spec(tmp_path / "broken.yaml")


def test_run_spec_stops_when_nothing_fits_this_machine(tmp_path: Path) -> None:
    spec = tmp_path / "big.json"
    spec.write_text(
        json.dumps(
            {
                "name": "too-big",
                "resource_requirements": [{"name": "huge", "num_cpus": 64, "memory": "1g"}],
                "jobs": [{"name": "wide", "command": "true", "resource_requirements": "huge"}],
            }
        )
    )
    result = run_spec_cli(spec, tmp_path, "--num-cpus", "1", "--stall-seconds", "2")
    assert result.exit_code == 1, result.output
    # The watcher's counts name the ready job that no runner of this machine can take.
    assert "1 jobs ready" in result.output and "fit this machine" in result.output
