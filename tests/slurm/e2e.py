"""Helpers for end-to-end tests on the real cluster: the real CLI, polling, allocation logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from hpcflow.client import Client
from tests.slurm_cluster import SlurmCluster

T = TypeVar("T")


def hpcflow(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`python -m hpcflow ...`) and fail with its output when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "hpcflow", *args],
        cwd=cwd,
        text=True,
        env={**os.environ, **env},
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, (
        f"hpcflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def hpcflow_json(*args: str, env: Mapping[str, str], cwd: Path) -> Any:
    """The CLI's `-o json` answer."""
    return json.loads(hpcflow(*args, "-o", "json", env=env, cwd=cwd).stdout)


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    explain: Callable[[], str] = lambda: "",
    interval: float = 0.1,
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{explain()}")
        time.sleep(interval)


def statuses(api: Client, wf: str) -> dict[str, str]:
    """Job name -> status."""
    return {j["name"]: j["status"] for j in api.iter_items(f"/workflows/{wf}/jobs")}


def live_ids(cluster: SlurmCluster) -> set[str]:
    """Allocations the cluster still holds (pending, running, completing)."""
    return set(cluster.job_ids("pending,running,suspended,completing,configuring"))


def logs(paths: Iterable[str | Path | None], tail: int = 2500) -> str:
    """The ends of allocation output files, for failure messages."""
    parts = []
    for path in paths:
        if not path:
            continue
        try:
            parts.append(f"--- {path}:\n{Path(path).read_text(errors='replace')[-tail:]}")
        except OSError:
            parts.append(f"--- {path}: (missing)")
    return "\n".join(parts)


def node_logs(folder: Path) -> str:
    """Every allocation output file under a folder (the runners' own messages)."""
    return logs(sorted(folder.rglob("*.out")) + sorted(folder.rglob("*.log")))
