#!/usr/bin/env python
"""Time one autoscaler tick() over 1,000 workflows holding 1,000,000 jobs, on SQLite and PG.

The data is built with engine bulk inserts (no HTTP): jobs in mixed statuses and four resource
classes (some assigned to a config, a few fitting nowhere), Slurm configs on every workflow and
local configs on some, active runners with fresh heartbeats, open and ended allocations, and a
few canceled and archived workflows. A fake submitter answers status() with each allocation's
state and submit() with a new id. The first tick launches nodes up to each config's limits; the
ticks after it are the steady state the loop repeats every interval (target <= 200 ms).

    .venv/bin/python bench/autoscale.py                       # both databases
    .venv/bin/python bench/autoscale.py --pg-url ''           # SQLite only
    .venv/bin/python bench/autoscale.py --workflows 100 --jobs 100000 --profile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch import reset_postgres  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from hpcflow import db  # noqa: E402
from hpcflow.autoscale import tick  # noqa: E402
from hpcflow.config import Settings  # noqa: E402
from hpcflow.models import (  # noqa: E402
    ComputeNode,
    Job,
    ScheduledComputeNode,
    Workflow,
    WorkflowConfig,
    WorkflowStatus,
)
from hpcflow.models.schedulers import LocalScheduler, SlurmScheduler  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/hpcflow_bench_autoscale"
GIB = 1024**3
# (cpus, memory, gpus, runtime seconds, share): the last class fits no config (unfit event).
CLASSES = [
    (1, GIB, 0, 600.0, 50),
    (2, 4 * GIB, 0, 3600.0, 30),
    (8, 30 * GIB, 0, 7200.0, 19),
    (64, 512 * GIB, 0, 600.0, 1),
]
# Status mix per 100 jobs.
STATUSES = [
    ("done", 55),
    ("blocked", 15),
    ("ready", 15),
    ("submitted", 5),
    ("submitted_pending", 2),
    ("uninitialized", 3),
    ("canceled", 3),
    ("terminated", 2),
]
BATCH = 20_000


class FakeSubmitter:
    """Answers from a dict of states (so the steady state stays steady); submit makes ids."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.submitted = 0
        self.status_calls = 0

    def submit(self, request: Any) -> Any:
        self.submitted += 1
        sid = f"new{self.submitted}"
        self.states[sid] = "pending"
        return type("Result", (), {"scheduler_id": sid, "script": None, "output_path": None})()

    def status(self, ids: list[str]) -> dict[str, str]:
        self.status_calls += 1
        return {i: self.states.get(i, "unknown") for i in ids}

    def cancel(self, ids: list[str]) -> None:
        for i in ids:
            self.states[i] = "canceled"


def template(model: Any, **required: Any) -> dict[str, Any]:
    """Every column of a table with the model's defaults (core inserts apply none)."""
    obj = model(**required)
    return {c.name: getattr(obj, c.name) for c in model.__table__.columns if c.name != "id"}


def fresh_engine(url: str) -> Engine:
    """An empty, migrated database (PostgreSQL: the scratch database is created if missing)."""
    if not url.startswith("sqlite"):
        reset_postgres(url)
    engine = db.make_engine(url)
    db.upgrade(engine)
    return engine


def build(engine: Engine, workflows: int, jobs: int, now: float) -> dict[str, str]:
    """Insert everything; returns the allocation states the fake submitter reports."""
    per_wf = jobs // workflows
    states: dict[str, str] = {}
    started = datetime.fromtimestamp(now - 600, UTC).isoformat()
    job_t = template(Job, workflow_id=0, command="x")
    with engine.begin() as conn:
        conn.execute(
            insert(Workflow.__table__),
            [  # type: ignore[attr-defined]
                {"user": "bench", "name": f"wf{w}", "is_archived": w % 50 == 49, "rev": 1}
                for w in range(workflows)
            ],
        )
        ids = [r[0] for r in conn.execute(text("SELECT id FROM workflows ORDER BY id"))]
        conn.execute(
            insert(WorkflowStatus.__table__),
            [  # type: ignore[attr-defined]
                {**template(WorkflowStatus, workflow_id=w), "is_canceled": i % 40 == 39}
                for i, w in enumerate(ids)
            ],
        )
        conn.execute(
            insert(WorkflowConfig.__table__),
            [  # type: ignore[attr-defined]
                template(WorkflowConfig, workflow_id=w) for w in ids
            ],
        )
        conn.execute(
            insert(SlurmScheduler.__table__),
            [  # type: ignore[attr-defined]
                {
                    **template(SlurmScheduler, workflow_id=w, account="a"),
                    "cpus_per_task": 8,
                    "mem": "32g",
                    "walltime": "04:00:00",
                    "max_nodes": 6,
                    "max_queued": 3,
                    "is_paused": i % 100 == 7,
                }
                for i, w in enumerate(ids)
            ],
        )
        conn.execute(
            insert(LocalScheduler.__table__),
            [  # type: ignore[attr-defined]
                {
                    **template(LocalScheduler, workflow_id=w),
                    "num_cpus": 8,
                    "memory": "16g",
                    "max_nodes": 2,
                    "max_queued": 2,
                }
                for w in ids[::5]
            ],
        )
        slurm = {
            w: sid for w, sid in conn.execute(text("SELECT workflow_id, id FROM slurm_schedulers"))
        }
        # Allocations: ended history, one running with a runner, one still queued (half).
        allocs, nodes = [], []
        for i, w in enumerate(ids):
            cfg = f"slurm_schedulers/{slurm[w]}"
            for k, status in enumerate(
                ["completed", "canceled", "completed", "running", "pending"]
            ):
                if status == "pending" and i % 2:
                    continue
                sid = f"{w}{k:02d}"
                allocs.append(
                    {
                        **template(
                            ScheduledComputeNode,
                            workflow_id=w,
                            scheduler_config_id=cfg,
                            status=status,
                        ),
                        "scheduler_id": sid,
                        "submitted_at": now - 900,
                    }
                )
                states[sid] = status
            # One live runner in the running allocation (half the workflows), two that left.
            for k, sid in enumerate([f"{w}03", f"{w}00", f"{w}02"]):
                nodes.append(
                    {
                        **template(
                            ComputeNode,
                            workflow_id=w,
                            hostname=f"n{w}-{k}",
                            pid=100 + k,
                            start_time=started,
                            resources={},
                        ),
                        "is_active": k == 0 and i % 2 == 0,
                        "last_heartbeat": now - 5 if k == 0 else now - 3000,
                        "scheduler": {"type": "slurm", "job_id": sid},
                        "resources": {
                            "num_cpus": 8,
                            "memory_gb": 32,
                            "num_gpus": 0,
                            "num_nodes": 1,
                            "time_limit": "P0DT4H",
                            "scheduler_config_id": cfg,
                        },
                    }
                )
        conn.execute(insert(ScheduledComputeNode.__table__), allocs)  # type: ignore[attr-defined]
        conn.execute(insert(ComputeNode.__table__), nodes)  # type: ignore[attr-defined]
        live = {
            w: n
            for w, n in conn.execute(
                text("SELECT workflow_id, id FROM compute_nodes WHERE is_active")
            )
        }
    status_cycle = [s for s, n in STATUSES for _ in range(n)]
    class_cycle = [c for c in CLASSES for _ in range(c[4])]
    rows: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for i, w in enumerate(ids):
            cfg = f"slurm_schedulers/{slurm[w]}"
            for j in range(per_wf):
                status = status_cycle[(j * 7 + i) % 100]
                cpus, memory, gpus, runtime, _share = class_cycle[(j * 13 + i) % 100]
                node = live.get(w) if status in ("submitted", "submitted_pending") else None
                if status in ("submitted", "submitted_pending") and node is None:
                    status = "done"
                rows.append(
                    {
                        **job_t,
                        "workflow_id": w,
                        "name": f"j{j}",
                        "command": f"run {j}",
                        "status": status,
                        "num_cpus": cpus,
                        "memory_bytes": memory,
                        "num_gpus": gpus,
                        "runtime_seconds": runtime,
                        "scheduler_config_id": cfg if j % 5 == 0 else None,
                        "compute_node_id": node,
                    }
                )
                if len(rows) >= BATCH:
                    conn.execute(insert(Job.__table__), rows)  # type: ignore[attr-defined]
                    rows = []
        if rows:
            conn.execute(insert(Job.__table__), rows)  # type: ignore[attr-defined]
    if engine.dialect.name == "postgresql":
        # What autovacuum does on a live server: statistics and the visibility map (which
        # index-only scans need) after the bulk load.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return states


def run(name: str, url: str, args: argparse.Namespace) -> None:
    """Build, then time the first tick and the steady ticks after it."""
    engine = fresh_engine(url)
    now = time.time()
    t0 = time.perf_counter()
    states = build(engine, args.workflows, args.jobs, now)
    built = time.perf_counter() - t0
    sessions = db.session_factory(engine)
    settings = Settings(heartbeat_interval_seconds=30, lease_intervals=3)
    fake = FakeSubmitter(states)
    subs = {"slurm": fake, "local": FakeSubmitter(states)}
    with sessions() as session:
        first = tick(session, now, subs, settings)
    times = []
    phases: dict[str, list[float]] = {}
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    for k in range(args.repeat):
        with sessions() as session:
            report = tick(session, now + 1 + k, subs, settings)
        times.append(report.seconds)
        for phase, seconds in report.phases.items():
            phases.setdefault(phase, []).append(seconds)
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    print(f"{name}: {args.workflows} workflows, {args.jobs:,} jobs built in {built:.1f} s")
    print(
        f"  first tick {first.seconds * 1000:.0f} ms: launched {first.total_launched} nodes, "
        f"polled {first.polled}, ready {first.ready_jobs}, {first.events} events, "
        f"lost {len(first.lost_nodes)}, errors {len(first.errors)}"
    )
    print(
        f"  steady tick: median {statistics.median(times) * 1000:.0f} ms, best "
        f"{min(times) * 1000:.0f} ms over {len(times)} (launched {report.total_launched}, "
        f"polled {report.polled}, ready {report.ready_jobs}, lost {len(report.lost_nodes)})"
    )
    print(
        "  steady phases (median ms): "
        + ", ".join(f"{p} {statistics.median(v) * 1000:.0f}" for p, v in phases.items())
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--pg-url", default=PG_URL, help="'' to skip PostgreSQL")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the steady ticks")
    args = parser.parse_args()
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            run("sqlite", f"sqlite:///{tmp}/bench.db", args)
    if args.pg_url:
        run("postgresql", args.pg_url, args)


if __name__ == "__main__":
    main()
