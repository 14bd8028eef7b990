#!/usr/bin/env python
"""Runner benchmarks through `hpcflow run` (embedded server, autoscaler, local submitter).

Prints three numbers, each from the run's own database (results: completion time and run time
of every job) and, for comparison, from the command's wall time:
  1. throughput: N independent `true` jobs on --slots CPUs (jobs/s);
  2. per-link latency along a chain of `true` jobs: a job's start minus its blocker's end
     (p50/p95/max ms), i.e. how fast an idle runner starts newly ready work;
  3. efficiency of `sleep 0.05` jobs on 8 slots: ideal time (jobs x 0.05 / 8) over the time
     from the first job's start to the last job's end.
The end-to-end figures include starting the server and the runner (about a second or two).
Run folders (the SQLite database and two output files per job) go under $TMPDIR: with
TMPDIR=/dev/shm the figures measure hpcflow rather than the disk. On these VMs, file creation
on the ext4 disk slowed threefold for minutes after large deletions, which moved the
throughput figure of the same code between about 580 and 1,570 jobs/s.
Usage: bench/noop.py [--jobs 10000] [--chain 200] [--sleep-jobs 200] [--repeat 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def spec(name: str, count: int, command: str, chain: bool = False) -> dict[str, Any]:
    """A workflow spec of `count` jobs running `command`, independent or in a chain."""
    jobs = [
        {
            "name": f"j{i}",
            "command": command,
            **({"blocked_by": [f"j{i - 1}"]} if chain and i else {}),
        }
        for i in range(count)
    ]
    return {"name": name, "jobs": jobs}


RUNNER_FLAGS: list[str] = []  # further flags for hpcflow run (--runner-flag)


def hpcflow_run(folder: Path, body: dict[str, Any], slots: int) -> tuple[float, list[Any]]:
    """Run a spec through `hpcflow run`; returns the wall time and (start, end) of every job."""
    path = folder / f"{body['name']}.json"
    path.write_text(json.dumps(body))
    run_dir = folder / body["name"]
    cmd = [
        sys.executable,
        "-m",
        "hpcflow",
        "run",
        str(path),
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--num-cpus",
        str(slots),
        "--max-rows",
        "0",
        "--interval",
        "0.2",
        "--log-tail-bytes",
        "0",
        *RUNNER_FLAGS,
    ]
    began = time.perf_counter()
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(
            f"hpcflow run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    with sqlite3.connect(run_dir / "hpcflow.db") as conn:
        rows = conn.execute(
            "SELECT job_key, completion_time, exec_time_minutes FROM results"
        ).fetchall()
    spans = []
    for key, completed, minutes in rows:
        end = datetime.fromisoformat(completed).timestamp()
        spans.append((int(key), end - minutes * 60, end))
    if len(spans) != len(body["jobs"]):
        raise SystemExit(f"{len(spans)} results for {len(body['jobs'])} jobs")
    return wall, sorted(spans)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def throughput(folder: Path, jobs: int, slots: int) -> None:
    wall, spans = hpcflow_run(folder, spec(f"noop{jobs}", jobs, "true"), slots)
    busy = max(e for _, _, e in spans) - min(s for _, s, _ in spans)
    print(
        f"throughput: {jobs:,} `true` jobs on {slots} slots: {jobs / busy:,.0f} jobs/s "
        f"(first start to last end {busy:.2f} s); end to end {jobs / wall:,.0f} jobs/s "
        f"({wall:.2f} s with server and runner start-up)",
        flush=True,
    )


def chain(folder: Path, jobs: int, slots: int) -> None:
    wall, spans = hpcflow_run(folder, spec(f"chain{jobs}", jobs, "true", chain=True), slots)
    ordered = sorted(spans)  # keys follow the chain
    links = [(nxt[1] - cur[2]) * 1000 for cur, nxt in itertools.pairwise(ordered)]
    print(
        f"chain latency over {len(links)} links of `true`: p50 {statistics.median(links):.2f} "
        f"ms, p95 {percentile(links, 95):.2f} ms, max {max(links):.2f} ms "
        f"(end to end {wall:.2f} s)",
        flush=True,
    )


def efficiency(folder: Path, jobs: int, slots: int, seconds: float) -> None:
    wall, spans = hpcflow_run(folder, spec(f"sleep{jobs}", jobs, f"sleep {seconds}"), slots)
    busy = max(e for _, _, e in spans) - min(s for _, s, _ in spans)
    ideal = jobs * seconds / slots
    print(
        f"efficiency: {jobs} `sleep {seconds}` jobs on {slots} slots: {ideal / busy:.3f} "
        f"(ideal {ideal:.2f} s, first start to last end {busy:.2f} s); end to end "
        f"{ideal / wall:.3f} ({wall:.2f} s)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--sleep-jobs", type=int, default=200)
    parser.add_argument("--sleep-slots", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=["throughput", "chain", "efficiency"])
    parser.add_argument(
        "--runner-flag",
        action="append",
        default=[],
        help="a further hpcflow run flag, e.g. --runner-flag=--no-follow (repeatable)",
    )
    args = parser.parse_args()
    print(
        f"hpcflow run on {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; run folders in {tempfile.gettempdir()}",
        flush=True,
    )
    phases = {
        "throughput": lambda folder: throughput(folder, args.jobs, args.slots),
        "chain": lambda folder: chain(folder, args.chain, args.slots),
        "efficiency": lambda folder: efficiency(
            folder, args.sleep_jobs, args.sleep_slots, args.sleep
        ),
    }
    RUNNER_FLAGS.extend(args.runner_flag)
    for _ in range(args.repeat):
        for name, phase in phases.items():
            if args.only not in (None, name):
                continue
            # A fresh folder per phase, removed after it: no phase runs beside the 20,000
            # output files and the database of the one before.
            with tempfile.TemporaryDirectory(prefix="hpcflow-noop-") as tmp:
                phase(Path(tmp))


if __name__ == "__main__":
    main()
