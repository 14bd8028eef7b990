"""Reports: utilization per resource-requirements group, and every run of every job.

Both read a workflow's results and job process stats a chunk of jobs at a time; each stats
document is paired with the attempt it describes (autotune.samples.pair), so a job retried
within one run reports every attempt with its own numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hpcflow.autotune.groups import fields, groups_of
from hpcflow.autotune.samples import nearest_rank, pair
from hpcflow.engine import states
from hpcflow.engine.documents import get_workflow
from hpcflow.engine.workflows import get_status
from hpcflow.errors import Invalid
from hpcflow.models import ComputeNode, Job, JobProcessStats, ResourceRequirements, Result

JOBS = Job.__table__.c  # type: ignore[attr-defined]
RESULTS = Result.__table__.c  # type: ignore[attr-defined]
STATS = JobProcessStats.__table__.c  # type: ignore[attr-defined]
GIB = 1024**3
HOUR = 3600.0
CHUNK = 2000
KILLED = {137: "memory", 124: "runtime"}


@dataclass
class Attempt:
    """One result with what it asked for and, when stats arrived, what it used."""

    job: Job
    result: Result
    number: int
    stats: JobProcessStats | None = None

    @property
    def asked(self) -> tuple[float, float, float]:
        """(memory bytes, CPUs, runtime seconds) the run asked for (the job's if unrecorded)."""
        r, j = self.result, self.job
        return (
            float(r.req_memory_bytes if r.req_memory_bytes is not None else j.memory_bytes),
            float(r.req_num_cpus if r.req_num_cpus is not None else j.num_cpus),
            float(
                r.req_runtime_seconds if r.req_runtime_seconds is not None else j.runtime_seconds
            ),
        )

    @property
    def seconds(self) -> float:
        """Wall time of the run."""
        return self.result.exec_time_minutes * 60.0

    @property
    def succeeded(self) -> bool:
        """Done with return code 0."""
        return self.result.return_code == 0 and self.result.status == states.DONE


def _run(session: Session, workflow: str | int, run_id: int | None) -> tuple[int, int]:
    wf = get_workflow(session, workflow)
    if run_id is not None and run_id < 0:
        raise Invalid(f"run_id must be 0 or more, got {run_id}", field="run_id")
    return wf.id, get_status(session, wf.id).run_id if run_id is None else run_id


def _attempts(
    session: Session, workflow_id: int, run_id: int, jobs: dict[int, Job]
) -> list[Attempt]:
    """Every attempt of these jobs in the run, each with the stats that describe it."""
    keys = [str(k) for k in jobs]
    results: dict[str, list[Result]] = defaultdict(list)
    for r in session.scalars(
        select(Result)
        .where(
            RESULTS.workflow_id == workflow_id, RESULTS.run_id == run_id, RESULTS.job_key.in_(keys)
        )
        .order_by(RESULTS.id)
    ):
        results[r.job_key].append(r)
    found = [Attempt(jobs[int(k)], r, n + 1) for k, rs in results.items() for n, r in enumerate(rs)]
    by_result = {a.result.id: a for a in found}
    for s in session.scalars(
        select(JobProcessStats)
        .where(STATS.workflow_id == workflow_id, STATS.run_id == run_id, STATS.job_key.in_(keys))
        .order_by(STATS.id)
    ):
        target = pair(results.get(s.job_key, []), s.timestamp)
        if target is not None and by_result[target.id].stats is None:
            by_result[target.id].stats = s
    return sorted(found, key=lambda a: a.result.id)


def attempts(
    session: Session, workflow_id: int, run_id: int
) -> Iterator[tuple[list[Attempt], dict[int, int]]]:
    """Every attempt of the run, a chunk of jobs at a time (keyset), with each job's group."""
    last = 0
    while True:
        jobs = {
            j.id: j
            for j in session.scalars(
                select(Job)
                .where(JOBS.workflow_id == workflow_id, JOBS.id > last)
                .order_by(JOBS.id)
                .limit(CHUNK)
            )
        }
        if not jobs:
            return
        last = max(jobs)
        yield _attempts(session, workflow_id, run_id, jobs), groups_of(session, workflow_id, jobs)


@dataclass
class GroupUse:
    """Accumulated use of one resource-requirements group."""

    jobs: set[int] = field(default_factory=set)
    runs: int = 0
    succeeded: int = 0
    killed: dict[str, int] = field(default_factory=lambda: {"memory": 0, "runtime": 0})
    without_stats: int = 0
    memory: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    runtime: list[float] = field(default_factory=list)
    asked: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    used: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    core_hours: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    gb_hours: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    def add(self, a: Attempt) -> None:
        """Count one attempt: observed use from successful runs, waste from every run."""
        self.jobs.add(a.job.id)
        self.runs += 1
        why = KILLED.get(a.result.return_code)
        if why and a.result.status == states.DONE:
            self.killed[why] += 1
        if a.stats is None:
            self.without_stats += 1
            if a.succeeded:
                self.succeeded += 1
                self.runtime.append(a.seconds)
            return
        memory, cpus, runtime = a.asked
        peak, cores, hours = a.stats.max_rss, a.stats.avg_cpu_percent / 100, a.seconds / HOUR
        _waste(self.core_hours, cpus * hours, cores * hours)
        _waste(self.gb_hours, memory / GIB * hours, peak / GIB * hours)
        if not a.succeeded:
            return
        self.succeeded += 1
        self.memory.append(peak)
        self.cpu.append(a.stats.max_cpu_percent)
        self.runtime.append(a.seconds)
        for i, (want, got) in enumerate(((memory, peak), (runtime, a.seconds), (cpus, cores))):
            self.asked[i] += want
            self.used[i] += got

    def report(self) -> dict[str, Any]:
        """The group's numbers as the utilization report shows them."""
        n = len(self.memory)
        ratio = {
            name: (self.asked[i] / self.used[i] if self.used[i] > 0 else None)
            for i, name in enumerate(("memory", "runtime", "cpus"))
        }
        return {
            "num_jobs": len(self.jobs),
            "num_runs": self.runs,
            "num_succeeded": self.succeeded,
            "num_killed_memory": self.killed["memory"],
            "num_killed_runtime": self.killed["runtime"],
            "num_runs_without_stats": self.without_stats,
            "requested": {
                "memory_bytes": self.asked[0] / n if n else None,
                "runtime_seconds": self.asked[1] / n if n else None,
                "num_cpus": self.asked[2] / n if n else None,
            },
            "observed": {
                "memory_bytes": _spread(self.memory),
                "cpu_percent": _spread(self.cpu),
                "runtime_seconds": _spread(self.runtime),
            },
            "ratio": ratio,
            "core_hours": dict(zip(("requested", "used", "wasted"), self.core_hours, strict=True)),
            "gb_hours": dict(zip(("requested", "used", "wasted"), self.gb_hours, strict=True)),
        }


def _waste(acc: list[float], asked: float, used: float) -> None:
    """Requested, used and wasted (requested minus used, never negative per run)."""
    acc[0] += asked
    acc[1] += used
    acc[2] += max(0.0, asked - used)


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50": nearest_rank(values, 0.5), "p95": nearest_rank(values, 0.95), "max": max(values)}


def utilization(session: Session, workflow: str | int, run_id: int | None = None) -> dict[str, Any]:
    """Per group: requested vs observed (p50, p95, max) and the waste in core- and GB-hours."""
    wf_id, run = _run(session, workflow, run_id)
    use: dict[int | None, GroupUse] = defaultdict(GroupUse)
    for found, rr_of in attempts(session, wf_id, run):
        for a in found:
            use[rr_of.get(a.job.id)].add(a)
    rr_table = ResourceRequirements.__table__.c  # type: ignore[attr-defined]
    rrs = {
        rr.id: rr
        for rr in session.scalars(select(ResourceRequirements).where(rr_table.workflow_id == wf_id))
    }
    out, totals = [], GroupUse()
    for rr_id in sorted(use, key=lambda k: -1 if k is None else k):
        rr = rrs.get(rr_id) if rr_id is not None else None
        g = use[rr_id]
        out.append(
            {
                "resource_requirements_key": str(rr_id) if rr_id is not None else None,
                "name": rr.name if rr else None,
                "current": fields(rr) if rr else None,
                **g.report(),
            }
        )
        for i in range(3):
            totals.core_hours[i] += g.core_hours[i]
            totals.gb_hours[i] += g.gb_hours[i]
        totals.runs += g.runs
    return {
        "workflow_key": str(wf_id),
        "run_id": run,
        "groups": out,
        "totals": {
            "num_runs": totals.runs,
            "core_hours": dict(
                zip(("requested", "used", "wasted"), totals.core_hours, strict=True)
            ),
            "gb_hours": dict(zip(("requested", "used", "wasted"), totals.gb_hours, strict=True)),
        },
    }


def results(
    session: Session, workflow: str | int, run_id: int | None, skip: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of every attempt of the run (by result key): status, code, runtime, peak, node."""
    wf_id, run = _run(session, workflow, run_id)
    cond = (RESULTS.workflow_id == wf_id, RESULTS.run_id == run)
    total = session.scalar(select(func.count()).where(*cond)) or 0
    page = list(
        session.execute(
            select(RESULTS.id, RESULTS.job_key)
            .where(*cond)
            .order_by(RESULTS.id)
            .offset(skip)
            .limit(limit)
        )
    )
    ids = sorted({int(k) for _, k in page if k.isdigit()})
    jobs = (
        {
            j.id: j
            for j in session.scalars(select(Job).where(JOBS.workflow_id == wf_id, JOBS.id.in_(ids)))
        }
        if ids
        else {}
    )
    wanted = {rid for rid, _ in page}
    found = [
        a for a in (_attempts(session, wf_id, run, jobs) if jobs else []) if a.result.id in wanted
    ]
    node_ids = {a.result.compute_node_id for a in found if a.result.compute_node_id}
    nodes: dict[int, str] = {}
    if node_ids:
        cn = ComputeNode.__table__.c  # type: ignore[attr-defined]
        nodes = {
            i: h for i, h in session.execute(select(cn.id, cn.hostname).where(cn.id.in_(node_ids)))
        }
    return [_row(a, run, nodes) for a in found], int(total)


def _row(a: Attempt, run: int, nodes: dict[int, str]) -> dict[str, Any]:
    """One attempt as the results report shows it."""
    memory, cpus, runtime = a.asked
    node = a.result.compute_node_id
    return {
        "job_key": str(a.job.id),
        "job_name": a.job.name,
        "job_status": a.job.status,
        "run_id": run,
        "attempt": a.number,
        "status": a.result.status,
        "return_code": a.result.return_code,
        "runtime_seconds": a.seconds,
        "completion_time": a.result.completion_time,
        "max_rss": a.stats.max_rss if a.stats else None,
        "max_cpu_percent": a.stats.max_cpu_percent if a.stats else None,
        "avg_cpu_percent": a.stats.avg_cpu_percent if a.stats else None,
        "requested_memory_bytes": memory,
        "requested_num_cpus": cpus,
        "requested_runtime_seconds": runtime,
        "compute_node_key": str(node) if node else None,
        "hostname": nodes.get(node or 0),
        "error_category": a.job.error_category,
        "result_key": str(a.result.id),
    }
