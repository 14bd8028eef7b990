"""Dispatch latency: time from a blocker's exit to its dependent's start along a chain of jobs.

Usage: python bench/dispatch.py [--jobs 50] [--command true] [--server gunicorn|process|thread]

Builds a chain of trivial jobs (each blocked by the previous one) on an embedded server with
SQLite, runs one local runner with tracing on, and prints p50/p95/max per-link latency in ms.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from hpcflow.runner.loop import Runner
from hpcflow.runner.options import RunnerOptions
from hpcflow.runner.resources import Offer


def build_chain(api: Client, n: int, command: str) -> str:
    """A workflow of n jobs, each blocked by the one before; returns its key."""
    wf = str(api.post("/workflows", {"user": "bench", "name": f"chain-{n}"})["_key"])
    keys: list[str] = []
    for i in range(n):
        body = {
            "name": f"link{i}",
            "command": command,
            "blocked_by": [f"jobs/{keys[-1]}"] if keys else [],
        }
        keys.append(str(api.post(f"/workflows/{wf}/bulk_jobs", {"jobs": [body]})["items"][0]))
    api.post(f"/workflows/{wf}/initialize_jobs")
    return wf


def link_latencies(trace: list[tuple[str, float, float]]) -> list[float]:
    """Seconds from each job's exit to the next job's start (trace ordered by start)."""
    ordered = sorted(trace, key=lambda t: t[1])
    return [nxt[1] - cur[2] for cur, nxt in itertools.pairwise(ordered)]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def measure(n: int, command: str, mode: str) -> list[float]:
    """Run the chain once and return its per-link latencies in seconds."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedServer(f"sqlite:///{Path(tmp) / 'bench.db'}", mode=mode) as server,
    ):
        api = Client(server.url)
        wf = build_chain(api, n, command)
        opts = RunnerOptions(
            output_dir=Path(tmp) / "out",
            trace=True,
            idle_timeout=10,
            log_tail_bytes=0,
            node_stats=False,
        )
        runner = Runner(api, wf, Offer(num_cpus=2, memory_bytes=8 * 1024**3), opts)
        started = time.perf_counter()
        outcome = runner.run()
        wall = time.perf_counter() - started
        if outcome.reason != "complete" or outcome.counts.get("done") != n:
            raise SystemExit(f"chain did not complete: {outcome}")
        print(f"{n} jobs in {wall:.3f} s ({n / wall:.0f} jobs/s along the chain)")
        return link_latencies(runner.trace)


def main() -> None:
    """Print per-link dispatch latency for a chain of trivial jobs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--command", default="true")
    parser.add_argument("--server", choices=("gunicorn", "process", "thread"), default="gunicorn")
    args = parser.parse_args()
    links = measure(args.jobs, args.command, args.server)
    ms = [x * 1000 for x in links]
    print(
        f"dispatch latency over {len(ms)} links ({args.server} server): "
        f"p50 {statistics.median(ms):.2f} ms, p95 {percentile(ms, 95):.2f} ms, "
        f"max {max(ms):.2f} ms"
    )


if __name__ == "__main__":
    main()
