"""Auto-tune on a synthetic workload: requested vs used per group, before and after tuning.

Usage: python bench/autotune.py [--jobs-per-group 20] [--runners 2] [--json FILE]

Three groups of jobs that really hold memory and busy a CPU: two ask for ~4x the memory and ~3x
the runtime they use, one for half the memory it needs. An hpcflow server (subprocess, SQLite)
and `hpcflow runner` processes run the workflow with the runner's memory limit (tolerance 0.2)
and runtime limit (factor 2); under-asking jobs are killed and escalated. Then auto-tune applies
what it learned (p95 x 1.2 memory, p95 x 1.3 runtime, never below the largest use), the workflow
restarts, and the second run is measured. Targets for the tuned run: requested/used memory
<= 1.3, runtime <= 1.5, no job killed. Exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer

MIB = 1024**2
# name, MiB held, seconds busy, memory asked, runtime asked (uses ~10 MiB more: the interpreter)
GROUPS = [
    ("over_small", 40, 1.0, "200m", "P0DT3.3S"),
    ("over_large", 80, 0.8, "360m", "P0DT2.7S"),
    ("under", 100, 1.0, "55m", "P0DT2S"),
]
TARGETS = {"memory": 1.3, "runtime": 1.5}


def command(mib: int, seconds: float) -> str:
    """Hold `mib` MiB (touched) and spin one CPU for `seconds`."""
    code = (
        f"import time\nx = b'a' * ({mib} * 1048576)\nt = time.time()\n"
        f"while time.time() - t < {seconds}:\n    pass\n"
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def build(api: Client, per_group: int) -> str:
    """The workflow: one resource-requirements document per group."""
    wf = str(api.post("/workflows", {"user": "bench", "name": "autotune"})["_key"])
    base = f"/workflows/{wf}"
    jobs = []
    for name, mib, seconds, memory, runtime in GROUPS:
        rr = api.post(
            f"{base}/resource_requirements",
            {"name": name, "num_cpus": 1, "memory": memory, "runtime": runtime},
        )
        jobs += [
            {
                "name": f"{name}{i}",
                "command": command(mib, seconds),
                "resource_requirements": rr["_id"],
            }
            for i in range(per_group)
        ]
    api.post(f"{base}/bulk_jobs", {"jobs": jobs})
    config = {k: v for k, v in api.get(f"{base}/config").items() if k not in ("_key", "_id")}
    api.put(
        f"{base}/config",
        {
            **config,
            "auto_tune_mode": "suggest",
            "memory_limit_tolerance": 0.2,
            "runtime_limit_factor": 2.0,
        },
    )
    api.post(f"{base}/initialize_jobs")
    return wf


def run(url: str, wf: str, runners: int, out: Path) -> float:
    """Run `hpcflow runner` processes (1 CPU each) until the workflow is done; seconds taken."""
    began = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hpcflow",
                "runner",
                wf,
                "--url",
                url,
                "--num-cpus",
                "1",
                "--memory",
                "1g",
                "--idle-timeout",
                "5",
                "--stats-interval",
                "0.1",
                "--poll-interval",
                "0.2",
                "--output-dir",
                str(out / f"runner{i}"),
            ],
            stdout=subprocess.DEVNULL,
        )
        for i in range(runners)
    ]
    for p in procs:
        p.wait(timeout=600)
    return time.monotonic() - began


def restart(api: Client, wf: str) -> None:
    """Every job again, as run_id + 1."""
    base = f"/workflows/{wf}"
    api.post(f"{base}/reset_job_status")
    status = api.get(f"{base}/status")
    api.put(
        f"{base}/status",
        {**{k: v for k, v in status.items() if k != "_id"}, "run_id": status["run_id"] + 1},
    )
    api.post(f"{base}/initialize_jobs")


def rows(report: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """One printable row per group."""
    out = []
    for g in report["groups"]:
        obs, req = g["observed"], g["requested"]
        out.append(
            {
                "run": label,
                "group": g["name"],
                "runs": g["num_runs"],
                "killed": g["num_killed_memory"] + g["num_killed_runtime"],
                "mem_req_mib": req["memory_bytes"] / MIB,
                "mem_used_p95_mib": obs["memory_bytes"]["p95"] / MIB,
                "mem_ratio": g["ratio"]["memory"],
                "rt_req_s": req["runtime_seconds"],
                "rt_used_p95_s": obs["runtime_seconds"]["p95"],
                "rt_ratio": g["ratio"]["runtime"],
                "gb_h_wasted": g["gb_hours"]["wasted"],
                "core_h_wasted": g["core_hours"]["wasted"],
            }
        )
    return out


def show(table: list[dict[str, Any]]) -> None:
    """Print rows as aligned columns."""
    cols = list(table[0])
    cells = [[f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in table]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs-per-group", type=int, default=20)
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--json", type=Path, help="Also write both reports here.")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedServer(f"sqlite:///{tmp}/bench.db", mode="process") as server,
    ):
        api = Client(server.url, timeout=60)
        wf = build(api, args.jobs_per_group)
        base = f"/workflows/{wf}"
        took = [run(server.url, wf, args.runners, Path(tmp))]
        first = api.get(f"{base}/reports/utilization", run_id=0)
        applied = api.post(f"{base}/auto_tune/apply")["applied"]
        restart(api, wf)
        took.append(run(server.url, wf, args.runners, Path(tmp)))
        second = api.get(f"{base}/reports/utilization", run_id=1)
    print(
        f"{3 * args.jobs_per_group} jobs, {args.runners} runners of 1 CPU; "
        f"run 1 {took[0]:.1f} s, run 2 {took[1]:.1f} s"
    )
    for change in applied:
        print(
            f"tuned {change['name']}: {change['old']} -> {change['new']} "
            f"({change['num_samples']} samples)"
        )
    show(rows(first, "before") + rows(second, "tuned"))
    for label, report in (("before", first), ("tuned", second)):
        t = report["totals"]
        print(
            f"{label}: wasted {t['gb_hours']['wasted']:.4g} GB-hours, "
            f"{t['core_hours']['wasted']:.4g} core-hours"
        )
    misses = [
        f"{g['name']}: {what} ratio {g['ratio'][what]:.3g} > {limit}"
        for g in second["groups"]
        for what, limit in TARGETS.items()
        if (g["ratio"][what] or 0) > limit
    ]
    misses += [
        f"{g['name']}: {g['num_killed_memory'] + g['num_killed_runtime']} killed"
        for g in second["groups"]
        if g["num_killed_memory"] + g["num_killed_runtime"]
    ]
    if args.json:
        args.json.write_text(
            json.dumps({"before": first, "tuned": second, "applied": applied}, indent=1)
        )
    print("targets met" if not misses else "targets missed: " + "; ".join(misses))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
