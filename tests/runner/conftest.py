"""Fixtures for runner tests: a real server in a thread and a builder for small workflows."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from hpcflow.runner.loop import Runner
from hpcflow.runner.options import Outcome, RunnerOptions
from hpcflow.runner.resources import Offer

PY = sys.executable
GIB = 1024**3


def py(code: str) -> str:
    """A job command running `code` with this interpreter (no shell involved)."""
    import shlex

    return f"{shlex.quote(PY)} -c {shlex.quote(code)}"


@pytest.fixture
def server(tmp_path: Path, sqlite_template: Path) -> Iterator[EmbeddedServer]:
    """A real hpcflow server on a free loopback port, SQLite in tmp_path, in a thread."""
    db = tmp_path / "server.db"
    shutil.copy(sqlite_template, db)
    with EmbeddedServer(f"sqlite:///{db}") as srv:
        yield srv


@pytest.fixture
def api(server: EmbeddedServer) -> Client:
    """An HTTP client for the server."""
    return Client(server.url, timeout=30)


def build(
    api: Client,
    jobs: list[dict[str, Any]],
    *,
    config: dict[str, Any] | None = None,
    initialize: bool = True,
) -> tuple[str, dict[str, str]]:
    """Create a workflow from compact job specs; returns (workflow key, job name -> key).

    A job spec: name, command, and optionally blocked_by (names), cpus, gpus, memory,
    runtime, output_files / input_files (paths), supports_termination.
    """
    wf = str(api.post("/workflows", {"user": "tester", "name": "runner-test"})["_key"])
    base = f"/workflows/{wf}"
    files: dict[str, str] = {}
    for spec in jobs:
        for path in [*spec.get("output_files", []), *spec.get("input_files", [])]:
            if path not in files:
                files[path] = api.post(f"{base}/files", {"name": path, "path": path})["_id"]
    keys: dict[str, str] = {}
    for spec in jobs:
        rr = api.post(
            f"{base}/resource_requirements",
            {
                "name": f"rr-{spec['name']}",
                "num_cpus": spec.get("cpus", 1),
                "num_gpus": spec.get("gpus", 0),
                "num_nodes": 1,
                "memory": spec.get("memory", "1m"),
                "runtime": spec.get("runtime", "P0DT1M"),
            },
        )
        body = {
            "name": spec["name"],
            "command": spec["command"],
            "supports_termination": spec.get("supports_termination", False),
            "blocked_by": [f"jobs/{keys[b]}" for b in spec.get("blocked_by", [])],
            "output_files": [files[p] for p in spec.get("output_files", [])],
            "input_files": [files[p] for p in spec.get("input_files", [])],
            "resource_requirements": rr["_id"],
        }
        [key] = api.post(f"{base}/bulk_jobs", {"jobs": [body]})["items"]
        keys[spec["name"]] = str(key)
    if config:
        current = api.get(f"{base}/config")
        api.put(
            f"{base}/config",
            {**{k: v for k, v in current.items() if k not in ("_key", "_id")}, **config},
        )
    if initialize:
        api.post(f"{base}/initialize_jobs")
    return wf, keys


def run_runner(
    api: Client,
    wf: str,
    tmp_path: Path,
    *,
    cpus: int = 4,
    gpus: int = 0,
    memory: int = 8 * GIB,
    **options: Any,
) -> tuple[Runner, Outcome]:
    """Run a runner on this process until it stops; returns it and its outcome."""
    defaults: dict[str, Any] = {
        "output_dir": tmp_path / "out",
        "idle_timeout": 5.0,
        "poll_interval": 0.05,
        "status_interval": 0.1,
        "stats_interval": 0.05,
        "server_retry_seconds": 10.0,
    }
    opts = RunnerOptions(**{**defaults, **options})
    runner = Runner(api, wf, Offer(num_cpus=cpus, memory_bytes=memory, num_gpus=gpus), opts)
    return runner, runner.run()


def jobs_by_name(api: Client, wf: str) -> dict[str, dict[str, Any]]:
    """Every job of the workflow by name."""
    return {j["name"]: j for j in api.iter_items(f"/workflows/{wf}/jobs")}


def results_by_key(api: Client, wf: str) -> dict[str, dict[str, Any]]:
    """The latest result of each job, by job key."""
    return {r["job_key"]: r for r in api.iter_items(f"/workflows/{wf}/results")}
