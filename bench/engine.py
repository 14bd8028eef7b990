#!/usr/bin/env python
"""Engine benchmarks through a real gunicorn server, on SQLite and PostgreSQL.

Measures: create + initialize a workflow through HTTP (with server peak RSS), claim + start +
complete throughput of concurrent simulated runners (with the batch operations, as hpcflow's
runner works, and with per-job start/complete calls, as torc's does), and the latency of
ready_job_requirements, a single claim and complete_job on a small and a large workflow (the
large one is built with engine bulk inserts, not HTTP). Sizes are flags; run smaller with e.g.
`bench/engine.py --jobs 10000 --run-jobs 5000 --big 100000`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch import reset_postgres  # noqa: E402
from servers import Gunicorn  # noqa: E402

from hpcflow import db  # noqa: E402
from hpcflow.engine.initialize import initialize_jobs  # noqa: E402
from hpcflow.engine.job_docs import add_jobs  # noqa: E402
from hpcflow.engine.workflows import create_workflow  # noqa: E402
from hpcflow.models.job import JobIn  # noqa: E402

LAST_INITIALIZE = 0.0
NODE = {
    "hostname": "bench",
    "pid": 1,
    "start_time": "2024-01-01 00:00:00.0",
    "resources": {"num_cpus": 1, "memory_gb": 1, "num_gpus": 0, "num_nodes": 1},
}


def call(http: requests.Session, method: str, url: str, **kw: Any) -> Any:
    resp = http.request(method, url, timeout=600, **kw)
    if resp.status_code != 200:
        raise RuntimeError(f"{method} {url} -> {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def layered_jobs(first: int, count: int, width: int, keys: list[str]) -> list[dict[str, Any]]:
    """Jobs first..first+count: each blocked by the job `width` before it (a 1% get two)."""
    jobs = []
    for i in range(first, first + count):
        blockers = []
        if i >= width:
            blockers.append(f"jobs/{keys[i - width]}")
            if i % 100 == 0:
                blockers.append(f"jobs/{keys[i - width + 1]}")
        jobs.append({"name": f"j{i}", "command": f"echo {i}", "blocked_by": blockers})
    return jobs


def create_via_http(url: str, n: int, width: int) -> tuple[str, int]:
    """A layered workflow through bulk_jobs (a layer per request) and initialize_jobs.

    Sets LAST_INITIALIZE to the seconds initialize_jobs took.
    """
    global LAST_INITIALIZE
    http = requests.Session()
    wf = call(http, "POST", f"{url}/workflows", json={"user": "bench", "name": f"http{n}"})["_key"]
    keys: list[str] = []
    edges = 0
    for first in range(0, n, width):
        jobs = layered_jobs(first, min(width, n - first), width, keys)
        edges += sum(len(j["blocked_by"]) for j in jobs)
        keys += call(http, "POST", f"{url}/workflows/{wf}/bulk_jobs", json={"jobs": jobs})["items"]
    started = time.perf_counter()
    call(http, "POST", f"{url}/workflows/{wf}/initialize_jobs")
    LAST_INITIALIZE = time.perf_counter() - started
    return wf, edges


def build_bulk(database_url: str, n: int, ready: int) -> str:
    """A large workflow via engine bulk inserts: `ready` roots, every other job in a chain."""
    engine = db.make_engine(database_url)
    factory = db.session_factory(engine)
    with db.transaction(factory) as session:
        wf = create_workflow(session, {"user": "bench", "name": f"bulk{n}"}).id
    keys: list[int] = []
    for first in range(0, n, ready):
        size = min(ready, n - first)
        items = [
            JobIn(command=f"echo {i}", blocked_by=[f"jobs/{keys[i - ready]}"] if i >= ready else [])
            for i in range(first, first + size)
        ]
        with db.transaction(factory) as session:
            keys += add_jobs(session, wf, items)
    with db.transaction(factory, immediate=True) as session:
        initialize_jobs(session, wf)
    engine.dispose()
    return str(wf)


def batch_runner(url: str, wf: str, batch: int, done: list[int], errors: list[str]) -> None:
    """A simulated runner as hpcflow's own works: one complete_jobs request reports the
    finished batch (started and completed) and claims the next one."""
    http = requests.Session()
    base = f"{url}/workflows/{wf}"
    try:
        node = call(http, "POST", f"{base}/compute_nodes", json=NODE)["_key"]
        run_id = call(http, "GET", f"{base}/status")["run_id"]
        offer = {"num_cpus": batch, "memory_gb": 1024, "num_gpus": 0, "num_nodes": 1}
        count, held = 0, []
        while True:
            body = {
                "run_id": run_id,
                "compute_node_key": node,
                "start": [{"key": j["_key"], "rev": j["_rev"]} for j in held],
                "jobs": [
                    {
                        "key": j["_key"],
                        "rev": j["_rev"],
                        "status": "done",
                        "result": {
                            "job_key": j["_key"],
                            "run_id": run_id,
                            "return_code": 0,
                            "exec_time_minutes": 0.01,
                            "completion_time": "2024-01-01T00:00:00",
                            "status": "done",
                        },
                    }
                    for j in held
                ],
                "claim": {"resources": offer},
            }
            answer = call(http, "POST", f"{base}/complete_jobs", json=body)
            if answer["errors"]:
                raise RuntimeError(f"refused items: {answer['errors'][:3]}")
            count += len(answer["completed"])
            held = answer["jobs"]
            if not held:
                if call(http, "GET", f"{base}/is_complete")["is_complete"]:
                    break
                time.sleep(0.02)  # wait for the next layer to be unblocked
        done.append(count)
    except Exception as exc:  # report, do not hang the benchmark
        errors.append(repr(exc))


def runner(url: str, wf: str, batch: int, done: list[int], errors: list[str]) -> None:
    """A simulated torc-style runner: batch claim, then start and complete each job."""
    http = requests.Session()
    base = f"{url}/workflows/{wf}"
    try:
        node = call(http, "POST", f"{base}/compute_nodes", json=NODE)["_key"]
        run_id = call(http, "GET", f"{base}/status")["run_id"]
        offer = {"num_cpus": batch, "memory_gb": 1024, "num_gpus": 0, "num_nodes": 1}
        count = 0
        while True:
            jobs = call(
                http,
                "POST",
                f"{base}/prepare_jobs_for_submission",
                json=offer,
                params={"compute_node_key": node},
            )["jobs"]
            if not jobs:
                if call(http, "GET", f"{base}/is_complete")["is_complete"]:
                    break
                time.sleep(0.02)  # wait for the next layer to be unblocked
                continue
            for job in jobs:
                key = job["_key"]
                job = call(
                    http, "PUT", f"{base}/jobs/{key}/start_job/{job['_rev']}/{run_id}/{node}"
                )
                result = {
                    "job_key": key,
                    "run_id": run_id,
                    "return_code": 0,
                    "exec_time_minutes": 0.01,
                    "completion_time": "2024-01-01T00:00:00",
                    "status": "done",
                }
                call(
                    http,
                    "POST",
                    f"{base}/jobs/{key}/complete_job/done/{job['_rev']}/{run_id}/{node}",
                    json=result,
                )
                count += 1
        done.append(count)
    except Exception as exc:  # report, do not hang the benchmark
        errors.append(repr(exc))


def throughput(
    url: str, wf: str, runners: int, batch: int, simulate: Callable[..., None] = runner
) -> tuple[float, int]:
    done: list[int] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=simulate, args=(url, wf, batch, done, errors))
        for _ in range(runners)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} runners failed: {errors[0]}")
    return sum(done) / elapsed, sum(done)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median and worst latency in ms."""
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), max(samples)


def latencies(url: str, wf: str, repeat: int) -> dict[str, tuple[float, float]]:
    """ready_job_requirements, a one-job claim, and complete_job on claimed, started jobs."""
    http = requests.Session()
    base = f"{url}/workflows/{wf}"
    node = call(http, "POST", f"{base}/compute_nodes", json=NODE)["_key"]
    run_id = call(http, "GET", f"{base}/status")["run_id"]
    one = {"num_cpus": 1, "memory_gb": 1, "num_gpus": 0, "num_nodes": 1}
    out = {
        "ready_job_requirements": timed(
            lambda: call(http, "GET", f"{base}/ready_job_requirements"), repeat
        )
    }
    claimed: list[dict[str, Any]] = []
    out["claim (1 job)"] = timed(
        lambda: claimed.extend(
            call(
                http,
                "POST",
                f"{base}/prepare_jobs_for_submission",
                json=one,
                params={"compute_node_key": node},
            )["jobs"]
        ),
        repeat,
    )
    started = [
        call(http, "PUT", f"{base}/jobs/{j['_key']}/start_job/{j['_rev']}/{run_id}/{node}")
        for j in claimed
    ]

    def complete() -> None:
        job = started.pop()
        key = job["_key"]
        result = {
            "job_key": key,
            "run_id": run_id,
            "return_code": 0,
            "exec_time_minutes": 0.1,
            "completion_time": "2024-01-01T00:00:00",
            "status": "done",
        }
        call(
            http,
            "POST",
            f"{base}/jobs/{key}/complete_job/done/{job['_rev']}/{run_id}/{node}",
            json=result,
        )

    out["complete_job"] = timed(complete, len(started))
    return out


def prepare_database(backend: str, pg_url: str, workdir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    reset_postgres(pg_url)
    return pg_url


def bench_backend(backend: str, args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hpcflow-bench-"))
    url = prepare_database(backend, args.pg_url, workdir)
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    server = Gunicorn(url, args.workers, args.threads)
    try:
        print(
            f"\n== {backend} (gunicorn {args.workers} workers x {args.threads} threads, "
            f"{os.cpu_count()} CPUs) ==",
            flush=True,
        )
        server.reset_peak()
        t = time.perf_counter()
        wf, edges = create_via_http(server.url, args.jobs, args.width)
        elapsed = time.perf_counter() - t
        print(
            f"create + initialize {args.jobs:,} jobs / {edges:,} edges via HTTP: "
            f"{elapsed:.1f} s (initialize_jobs {LAST_INITIALIZE:.1f} s), server peak RSS "
            f"{server.peak_rss / 2**20:.0f} MB (all workers)",
            flush=True,
        )
        modes = (
            ("batch", "batch operations (complete_jobs: start + complete + claim)", batch_runner),
            ("single", "per-job calls (claim, start_job, complete_job)", runner),
        )
        first = True
        for mode, label, simulate in modes:
            if args.mode not in ("both", mode):
                continue
            run_wf = wf
            if args.run_jobs != args.jobs or not first:  # each mode runs a fresh workflow
                run_wf, _ = create_via_http(server.url, args.run_jobs, args.width)
            first = False
            rate, n = throughput(server.url, run_wf, args.runners, args.batch, simulate)
            print(
                f"claim + start + complete, {args.runners} runners, batch {args.batch}, "
                f"{label}: {rate:,.0f} jobs/s ({n:,} jobs)",
                flush=True,
            )
        for size in (args.small, args.big):
            t = time.perf_counter()
            big = build_bulk(url, size, max(1, min(args.big_ready, size // 2)))
            built = time.perf_counter() - t
            lat = latencies(server.url, big, args.repeat)
            cells = ", ".join(f"{k} {m:.1f} ms (max {w:.1f})" for k, (m, w) in lat.items())
            print(f"{size:,}-job workflow (bulk-built in {built:.0f} s): {cells}", flush=True)
        if args.all_ready:
            t = time.perf_counter()
            big = build_bulk(url, args.big, args.big)
            built = time.perf_counter() - t
            lat = latencies(server.url, big, args.repeat)
            cells = ", ".join(f"{k} {m:.1f} ms (max {w:.1f})" for k, (m, w) in lat.items())
            print(f"{args.big:,} jobs all ready (bulk-built in {built:.0f} s): {cells}", flush=True)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--pg-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/hpcflow_bench",
        help="database to (re)create for the benchmark",
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs created through HTTP")
    parser.add_argument("--width", type=int, default=1000, help="jobs per layer / bulk request")
    parser.add_argument(
        "--run-jobs",
        type=int,
        default=20_000,
        help="jobs run by the simulated runners (separate workflow if != --jobs)",
    )
    parser.add_argument("--runners", type=int, default=32)
    parser.add_argument(
        "--mode",
        choices=["batch", "single", "both"],
        default="both",
        help="simulated runners: batch operations, per-job calls, or both",
    )
    parser.add_argument("--batch", type=int, default=16, help="CPUs offered per claim")
    parser.add_argument("--small", type=int, default=1000, help="small workflow for latencies")
    parser.add_argument("--big", type=int, default=1_000_000, help="large workflow")
    parser.add_argument(
        "--big-ready",
        type=int,
        default=10_000,
        help="ready jobs (chains' roots) in the latency workflows",
    )
    parser.add_argument(
        "--all-ready",
        action="store_true",
        help="also measure a large workflow whose jobs are all ready",
    )
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        bench_backend(backend, args)


if __name__ == "__main__":
    main()
