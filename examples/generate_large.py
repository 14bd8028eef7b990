#!/usr/bin/env python
"""Write a workflow spec of N jobs with dependencies, for benchmarks and scale tests.

The jobs form `--width` parallel chains: job i waits for job i - width, either through a file
the earlier job produces and the later one needs (`--deps files`, the default) or through
blocked_by (`--deps blocked_by`). Every job runs `--command` (default: `true`, which does
nothing). Examples:

    python examples/generate_large.py -n 100000 -o /tmp/large.json
    hpcflow run /tmp/large.json            # or POST it to /workflow_specifications
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def large_spec(
    num_jobs: int, width: int = 100, deps: str = "files", command: str = "true"
) -> dict[str, Any]:
    """A spec of `num_jobs` jobs in `width` chains linked by files or blocked_by."""
    if num_jobs < 0 or width < 1:
        raise ValueError("need num_jobs >= 0 and width >= 1")
    jobs: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    for i in range(num_jobs):
        job: dict[str, Any] = {
            "name": f"job{i}",
            "command": command,
            "resource_requirements": "tiny",
        }
        if deps == "files":
            files.append({"name": f"out{i}", "path": f"output/large/out{i}"})
            job["output_files"] = [f"out{i}"]
            if i >= width:
                job["input_files"] = [f"out{i - width}"]
        elif i >= width:
            job["blocked_by"] = [f"job{i - width}"]
        jobs.append(job)
    return {
        "name": f"large-{num_jobs}",
        "description": f"{num_jobs} jobs in {width} chains linked by {deps}",
        "resource_requirements": [
            {
                "name": "tiny",
                "num_cpus": 1,
                "num_gpus": 0,
                "num_nodes": 1,
                "memory": "10m",
                "runtime": "P0DT1M",
            }
        ],
        "files": files,
        "jobs": jobs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--num-jobs", type=int, default=100_000)
    parser.add_argument(
        "-w", "--width", type=int, default=100, help="number of parallel chains (default 100)"
    )
    parser.add_argument("--deps", choices=("files", "blocked_by"), default="files")
    parser.add_argument("--command", default="true")
    parser.add_argument("-o", "--output", type=Path, help="JSON file to write (default: stdout)")
    args = parser.parse_args(argv)
    spec = large_spec(args.num_jobs, args.width, args.deps, args.command)
    text = json.dumps(spec)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.num_jobs} jobs to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
