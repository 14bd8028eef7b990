"""Fixtures for submitter tests: a fake Slurm on PATH and a real server on each database."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from submitters.base import NodeRequest
from submitters.slurm import SlurmSubmitter

FAKE = Path(__file__).with_name("fakeslurm.py")
Reap = Callable[[Any, list[str]], None]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its tmp folder: a default ./hpcflow-* folder never lands in the repo."""
    monkeypatch.chdir(tmp_path)


@dataclass
class FakeSlurm:
    """The fake's folder, the environment that puts it on PATH, and readers of its files."""

    dir: Path
    env: dict[str, str]

    def write(self, name: str, text: str) -> None:
        (self.dir / name).write_text(text)

    def jobs(self) -> dict[str, dict[str, str]]:
        path = self.dir / "jobs.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def set_state(self, job_id: str, state: str) -> None:
        jobs = self.jobs()
        jobs[job_id]["state"] = state
        self.write("jobs.json", json.dumps(jobs))

    def calls(self, cmd: str | None = None) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        found = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        return [c for c in found if cmd is None or c["cmd"] == cmd]


@pytest.fixture
def fake_slurm(tmp_path: Path) -> FakeSlurm:
    """sbatch, squeue, sacct and scancel executables that run fakeslurm.py (no Slurm needed)."""
    bin_dir = tmp_path / "fakebin"
    state = tmp_path / "fakeslurm"
    bin_dir.mkdir()
    state.mkdir()
    for name in ("sbatch", "squeue", "sacct", "scancel"):
        exe = bin_dir / name
        # -S: no site packages to import, so each fake call starts in a few milliseconds.
        exe.write_text(
            f"#!{sys.executable} -S\nimport sys\n"
            f"sys.path.insert(0, {str(FAKE.parent)!r})\n"
            "import fakeslurm\nfakeslurm.main()\n"
        )
        exe.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_SLURM_DIR": str(state),
        "SLURM_CONF": str(tmp_path / "slurm.conf"),
    }
    return FakeSlurm(state, env)


@dataclass
class Sleeps:
    """An injectable sleep that records instead of waiting."""

    seconds: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def slurm(fake_slurm: FakeSlurm, sleeps: Sleeps, tmp_path: Path) -> SlurmSubmitter:
    """A SlurmSubmitter that talks to the fake Slurm and never really sleeps."""
    return SlurmSubmitter(
        script_dir=tmp_path / "scripts", env=fake_slurm.env, sleep=sleeps, backoff=1.0, retries=5
    )


def slurm_request(**config: Any) -> NodeRequest:
    """A request for workflow 7 on slurm_schedulers/3 with the given config fields."""
    return NodeRequest(
        workflow_key="7",
        scheduler_config_id="slurm_schedulers/3",
        config={"account": "proj1", "nodes": 1, **config},
        server_url="http://login1.cluster:8080",
        server_id="srv1",
    )


@pytest.fixture
def server(backend: Engine) -> Iterator[EmbeddedServer]:
    """A real hpcflow server in a thread, on SQLite and on PostgreSQL."""
    with EmbeddedServer(backend.url.render_as_string(hide_password=False)) as srv:
        yield srv


@pytest.fixture
def api(server: EmbeddedServer) -> Client:
    return Client(server.url, timeout=30)


@pytest.fixture
def reap() -> Iterator[Reap]:
    """Register launched allocations; whatever a failed test left running is canceled."""
    launched: list[tuple[Any, list[str]]] = []
    yield lambda sub, ids: launched.append((sub, list(ids)))
    for sub, ids in launched:
        with contextlib.suppress(Exception):
            sub.cancel(ids)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll a real process's observable state until `check` is truthy (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
