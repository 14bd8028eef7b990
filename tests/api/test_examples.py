"""The examples in examples/ load through the API and really run with `hpcflow run`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpcflow.cli.runner_cmd import run_cmd
from hpcflow.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_diamond_runs_from_a_checkout_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths in the example are relative to the repository root: run it from a copy of one.
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        run_cmd,
        [
            "examples/diamond/diamond.yaml",
            "--run-dir",
            str(tmp_path / "run"),
            "--no-progress",
            "--num-cpus",
            "2",
            "--memory",
            "4g",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "4 done" in result.output and "0 not successful" in result.output
    # work1 squared its half and scaled it by my_val's 2; work2 had no user data (scale 1).
    f3 = json.loads((tmp_path / "output/diamond/f3.json").read_text())
    f4 = json.loads((tmp_path / "output/diamond/f4.json").read_text())
    assert (f3["scale"], f3["sum"]) == (2, 2 * (9 + 16 + 25 + 4 + 25))
    assert (f4["scale"], f4["sum"]) == (1, 1 + 1 + 81 + 36 + 9)
    assert json.loads((tmp_path / "output/diamond/f5.json").read_text()) == {
        "total": 286,
        "count": 10,
    }


def test_independent_example_is_ten_ready_jobs(client: Any) -> None:
    spec = {"user": "u", **load_spec(ROOT / "examples/independent/independent.yaml")}
    wf = client.post("/workflow_specifications", json=spec).json["_key"]
    init = client.post(f"/workflows/{wf}/initialize_jobs").json
    assert (init["num_ready"], init["num_blocked"]) == (10, 0)


def test_generate_large_writes_a_loadable_spec(tmp_path: Path, client: Any) -> None:
    out = tmp_path / "large.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/generate_large.py"),
            "-n",
            "1500",
            "-w",
            "10",
            "--deps",
            "blocked_by",
            "-o",
            str(out),
        ],
        check=True,
    )
    spec = json.loads(out.read_text())
    assert len(spec["jobs"]) == 1500 and spec["jobs"][10]["blocked_by"] == ["job0"]
    wf = client.post("/workflow_specifications", json={"user": "u", **spec}).json["_key"]
    init = client.post(f"/workflows/{wf}/initialize_jobs").json
    assert (init["num_ready"], init["num_blocked"]) == (10, 1490)
