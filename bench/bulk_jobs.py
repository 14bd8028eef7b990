#!/usr/bin/env python
"""Time POST /workflows/{key}/bulk_jobs with 10,000 jobs through a real gunicorn server.

Each job needs one input file, produces one output file and is blocked by one earlier job, so
the request exercises every kind of reference check and edge insert. The files and the
blocking jobs are created first (untimed) with one POST /workflow_specifications; the timed
request is the bulk_jobs POST alone (the body is encoded before the clock starts). Runs on
SQLite and on PostgreSQL (a scratch database whose schema is dropped first). Optionally also
times POST /workflow_specifications of a large spec (`--spec-jobs 100000`).

    .venv/bin/python bench/bulk_jobs.py                        # both databases
    .venv/bin/python bench/bulk_jobs.py --pg-url ''            # SQLite only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from generate_large import large_spec  # noqa: E402
from scratch import reset_postgres  # noqa: E402
from servers import Gunicorn  # noqa: E402

from hpcflow import db  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/hpcflow_bench_bulk"


def setup(server: Gunicorn, num_jobs: int, blockers: int) -> tuple[str, bytes]:
    """A workflow with the files and blocking jobs, and the encoded bulk_jobs body."""
    spec = {
        "user": "bench",
        "name": "bulk-jobs",
        "files": [{"name": f"in{i}", "path": f"in/{i}"} for i in range(100)]
        + [{"name": f"out{i}", "path": f"out/{i}"} for i in range(num_jobs)],
        "jobs": [{"name": f"seed{i}", "command": "true"} for i in range(blockers)],
    }
    wf = str(server.call("POST", "/workflow_specifications", spec)["_key"])
    files = {
        f["name"]: f["_id"]
        for f in server.call("GET", f"/workflows/{wf}/files?limit=100000")["items"]
    }
    seeds = [j["_id"] for j in server.call("GET", f"/workflows/{wf}/jobs")["items"]]
    jobs = [
        {
            "name": f"job{i}",
            "command": f"run {i}",
            "input_files": [files[f"in{i % 100}"]],
            "output_files": [files[f"out{i}"]],
            "blocked_by": [seeds[i % blockers]],
        }
        for i in range(num_jobs)
    ]
    return wf, json.dumps({"jobs": jobs}).encode()


def bench(name: str, url: str, args: argparse.Namespace) -> None:
    """Time bulk_jobs (best and median of --repeat) and optionally a large spec."""
    if not url.startswith("sqlite"):
        reset_postgres(url)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    server = Gunicorn(url)
    try:
        times = []
        for _ in range(args.repeat):
            wf, body = setup(server, args.jobs, 100)
            start = time.perf_counter()
            keys = server.call("POST", f"/workflows/{wf}/bulk_jobs", data=body)["items"]
            times.append(time.perf_counter() - start)
            assert len(keys) == args.jobs
            edges = server.call("GET", f"/workflows/{wf}/edges/blocks?limit=0")["total_count"]
            assert edges == args.jobs, edges
        print(
            f"{name}: bulk_jobs of {args.jobs} jobs: best {min(times):.3f} s, "
            f"median {statistics.median(times):.3f} s over {len(times)} runs",
            flush=True,
        )
        if args.spec_jobs:
            spec = large_spec(args.spec_jobs)
            spec["user"] = "bench"
            data = json.dumps(spec).encode()
            start = time.perf_counter()
            wf = server.call("POST", "/workflow_specifications", data=data)["_key"]
            took = time.perf_counter() - start
            start = time.perf_counter()
            server.call("POST", f"/workflows/{wf}/initialize_jobs")
            init = time.perf_counter() - start
            print(
                f"{name}: workflow_specifications of {args.spec_jobs} jobs: {took:.2f} s; "
                f"initialize_jobs: {init:.2f} s",
                flush=True,
            )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--spec-jobs", type=int, default=0, help="also time a spec of this many jobs (e.g. 100000)"
    )
    parser.add_argument("--pg-url", default=PG_URL, help="'' to skip PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("sqlite", f"sqlite:///{tmp}/bench.db", args)
    if args.pg_url:
        bench("postgresql", args.pg_url, args)


if __name__ == "__main__":
    main()
