"""Synthetic jobs that really allocate memory and busy a CPU, grouped by resource requirements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpcflow.client import Client
from tests.runner.conftest import py

MIB = 1024**2


def hog(mib: int, seconds: float) -> str:
    """A command that holds `mib` MiB (touched) while a CPU spins for `seconds`."""
    return py(
        f"import time\nx = b'a' * ({mib} * 1048576)\nt = time.time()\n"
        f"while time.time() - t < {seconds}:\n    pass\n"
    )


@dataclass
class Group:
    """`count` jobs that use `mib` MiB for `seconds` and ask for `memory` and `runtime`."""

    name: str
    count: int
    mib: int
    seconds: float
    memory: str
    runtime: str
    cpus: int = 1


def build(
    api: Client,
    groups: list[Group],
    config: dict[str, Any] | None = None,
) -> tuple[str, dict[str, str]]:
    """A workflow with one resource-requirements document per group; returns (key, rr ids)."""
    wf = str(api.post("/workflows", {"user": "tester", "name": "autotune"})["_key"])
    base = f"/workflows/{wf}"
    rrs: dict[str, str] = {}
    jobs = []
    for g in groups:
        rrs[g.name] = api.post(
            f"{base}/resource_requirements",
            {"name": g.name, "num_cpus": g.cpus, "memory": g.memory, "runtime": g.runtime},
        )["_id"]
        jobs += [
            {
                "name": f"{g.name}{i}",
                "command": hog(g.mib, g.seconds),
                "resource_requirements": rrs[g.name],
            }
            for i in range(g.count)
        ]
    api.post(f"{base}/bulk_jobs", {"jobs": jobs})
    if config:
        current = api.get(f"{base}/config")
        api.put(
            f"{base}/config",
            {**{k: v for k, v in current.items() if k not in ("_key", "_id")}, **config},
        )
    api.post(f"{base}/initialize_jobs")
    return wf, rrs


def restart(api: Client, wf: str) -> None:
    """Run every job again as a new run (torc's restart: reset, next run_id, initialize)."""
    base = f"/workflows/{wf}"
    api.post(f"{base}/reset_job_status")
    status = api.get(f"{base}/status")
    api.put(
        f"{base}/status",
        {**{k: v for k, v in status.items() if k != "_id"}, "run_id": status["run_id"] + 1},
    )
    api.post(f"{base}/initialize_jobs")
