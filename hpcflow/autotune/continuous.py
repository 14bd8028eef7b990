"""Continuous auto-tune: per group, what completed jobs used -> proposed requirements.

Per workflow config `auto_tune_mode`: `off` does nothing on its own, `suggest` records proposals
(group state + an event), `apply` writes them to the group's document and its unclaimed jobs.

When: at the start of every autoscaler tick, before demand is read (so that tick already sizes
allocations from the tuned numbers), and whenever someone reads suggestions or asks to apply.
Cost: each pass reads only the stats not yet sampled, through a partial index, and touches only
the groups they belong to; a group keeps histograms, so a sample costs O(1) whatever its size.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from hpcflow.autotune import groups
from hpcflow.autotune.samples import (
    MIB,
    RUNTIME_STEP,
    bounded,
    cpus_for,
    duration_text,
    hist_add,
    hist_percentile,
    memory_text,
    pair,
)
from hpcflow.engine import states
from hpcflow.engine.events import post_event
from hpcflow.engine.initialize import chunks
from hpcflow.models import (
    AutoTuneGroup,
    JobProcessStats,
    ResourceRequirements,
    Result,
    WorkflowConfig,
)

log = logging.getLogger(__name__)
PERCENTILE = 0.95
MEMORY_MARGIN = 1.2
RUNTIME_MARGIN = 1.3
BATCH = 2000
# One pass samples at most this many stats per workflow; the rest wait for the next pass.
MAX_PER_PASS = 20_000
OFF, SUGGEST, APPLY = "off", "suggest", "apply"
STATS_TABLE = JobProcessStats.__table__  # type: ignore[attr-defined]
UNSAMPLED_INDEX = "ix_job_process_stats_unsampled"
_JPS = STATS_TABLE.c
_RESULTS = Result.__table__.c  # type: ignore[attr-defined]
_GROUPS = AutoTuneGroup.__table__.c  # type: ignore[attr-defined]
_CONFIGS = WorkflowConfig.__table__.c  # type: ignore[attr-defined]


@dataclass
class Sample:
    """What one successful run of a job used."""

    rr_id: int
    memory: float
    cpu: float
    runtime: float


def unsampled(session: Session, columns: str, limit: int) -> Any:
    """SQL for the oldest unsampled stats of workflow :wf, through the partial index.

    The predicate is the index's own, spelled per dialect; SQLite without ANALYZE statistics
    would pick the plain workflow index (every stats row of the workflow), so it is told which
    index to use. On PostgreSQL two passes at once (tick and a route) take disjoint rows.
    """
    if session.get_bind().dialect.name == "sqlite":
        return text(
            f"SELECT {columns} FROM job_process_stats INDEXED BY {UNSAMPLED_INDEX} "
            f"WHERE workflow_id = :wf AND sampled = 0 ORDER BY id LIMIT {int(limit)}"
        )
    return text(
        f"SELECT {columns} FROM job_process_stats WHERE workflow_id = :wf AND "
        f"NOT sampled ORDER BY id LIMIT {int(limit)} FOR UPDATE SKIP LOCKED"
    )


def ingest(session: Session, workflow_id: int, limit: int = MAX_PER_PASS) -> set[int]:
    """Fold stats not yet sampled into their groups; returns the groups that got samples."""
    touched: set[int] = set()
    taken = 0
    while taken < limit:
        stmt = unsampled(
            session,
            "id, job_key, run_id, max_rss, max_cpu_percent, timestamp",
            min(BATCH, limit - taken),
        )
        rows = list(session.execute(stmt, {"wf": workflow_id}))
        if not rows:
            break
        touched |= _fold(session, workflow_id, _samples(session, workflow_id, rows))
        session.execute(
            update(STATS_TABLE).where(_JPS.id.in_([r.id for r in rows])).values(sampled=True)
        )
        taken += len(rows)
    return touched


def _samples(session: Session, workflow_id: int, rows: list[Any]) -> list[Sample]:
    """Samples of the stats rows whose run succeeded (killed or failed runs say too little)."""
    keys = sorted({r.job_key for r in rows})
    rr_of = groups.groups_of(session, workflow_id, (int(k) for k in keys if k.isdigit()))
    runs: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for i in range(0, len(keys), 1000):
        for found in session.execute(
            select(
                _RESULTS.job_key,
                _RESULTS.run_id,
                _RESULTS.return_code,
                _RESULTS.status,
                _RESULTS.exec_time_minutes,
                _RESULTS.completion_time,
            )
            .where(_RESULTS.workflow_id == workflow_id, _RESULTS.job_key.in_(keys[i : i + 1000]))
            .order_by(_RESULTS.id)
        ):
            runs[(found.job_key, found.run_id)].append(found)
    out = []
    for row in rows:
        rr = rr_of.get(int(row.job_key)) if row.job_key.isdigit() else None
        res = pair(runs.get((row.job_key, row.run_id), []), row.timestamp)
        if rr is None or res is None or res.return_code != 0 or res.status != states.DONE:
            continue
        out.append(Sample(rr, row.max_rss, row.max_cpu_percent, res.exec_time_minutes * 60))
    return out


def locked_groups(
    session: Session, workflow_id: int, rr_ids: Iterable[int], *, create: bool = False
) -> dict[int, AutoTuneGroup]:
    """The groups' state rows (created when asked), row-locked in key order (PostgreSQL)."""
    ids = sorted(set(rr_ids))
    if not ids:
        return {}
    table = AutoTuneGroup.__table__  # type: ignore[attr-defined]
    upsert = pg_insert if session.get_bind().dialect.name != "sqlite" else sqlite_insert
    for chunk in chunks(ids, 1000) if create else ():
        session.execute(
            upsert(table)
            .values(
                [
                    {
                        "workflow_id": workflow_id,
                        "resource_requirements_id": i,
                        "rev": 1,
                        "num_samples": 0,
                        "max_memory_bytes": 0.0,
                        "max_cpu_percent": 0.0,
                        "max_runtime_seconds": 0.0,
                        "hist": {"memory": {}, "cpu": {}, "runtime": {}},
                    }
                    for i in chunk
                ]
            )
            .on_conflict_do_nothing(index_elements=["resource_requirements_id"])
        )
    found: dict[int, AutoTuneGroup] = {}
    for chunk in chunks(ids, 1000):
        stmt = (
            select(AutoTuneGroup)
            .where(_GROUPS.resource_requirements_id.in_(chunk))
            .order_by(_GROUPS.id)
            .execution_options(populate_existing=True)
        )
        if session.get_bind().dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        found.update({g.resource_requirements_id: g for g in session.scalars(stmt)})
    return found


def _fold(session: Session, workflow_id: int, samples: list[Sample]) -> set[int]:
    """Add samples to their groups' counts, peaks and histograms."""
    by_group: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        by_group[s.rr_id].append(s)
    rows = locked_groups(session, workflow_id, by_group, create=True)
    for rr_id, mine in by_group.items():
        g = rows[rr_id]
        hist = g.hist or {}
        g.hist = {
            "memory": hist_add(hist.get("memory", {}), [s.memory for s in mine]),
            "cpu": hist_add(hist.get("cpu", {}), [s.cpu for s in mine]),
            "runtime": hist_add(hist.get("runtime", {}), [s.runtime for s in mine]),
        }
        g.num_samples += len(mine)
        g.max_memory_bytes = max(g.max_memory_bytes, *(s.memory for s in mine))
        g.max_cpu_percent = max(g.max_cpu_percent, *(s.cpu for s in mine))
        g.max_runtime_seconds = max(g.max_runtime_seconds, *(s.runtime for s in mine))
        g.rev += 1
        g.updated = time.time()
    session.flush()
    return set(by_group)


def observed(g: AutoTuneGroup) -> dict[str, dict[str, float]]:
    """p95 and max of each measurement of a group."""
    hist = g.hist or {}
    out = {}
    for name, key, peak in (
        ("memory_bytes", "memory", g.max_memory_bytes),
        ("cpu_percent", "cpu", g.max_cpu_percent),
        ("runtime_seconds", "runtime", g.max_runtime_seconds),
    ):
        out[name] = {"p95": hist_percentile(hist.get(key, {}), PERCENTILE, peak), "max": peak}
    return out


def propose(g: AutoTuneGroup) -> dict[str, Any]:
    """New requirements: p95 x margin, never below the largest value seen (CPUs: p95 only,
    since using more CPUs than asked slows a job down but never kills it)."""
    seen = observed(g)
    mem, cpu, rt = seen["memory_bytes"], seen["cpu_percent"], seen["runtime_seconds"]
    return {
        "memory": memory_text(bounded(mem["max"], mem["p95"] * MEMORY_MARGIN, MIB)),
        "num_cpus": cpus_for(cpu["p95"]),
        "runtime": duration_text(bounded(rt["max"], rt["p95"] * RUNTIME_MARGIN, RUNTIME_STEP)),
    }


def apply_group(
    session: Session,
    workflow_id: int,
    rr: ResourceRequirements,
    g: AutoTuneGroup,
    new: dict[str, Any],
    source: str,
) -> dict[str, Any]:
    """Write a proposal to the document and its unclaimed jobs; the event says what changed."""
    old = groups.fields(rr)
    n = groups.set_group(session, workflow_id, rr, new)
    g.proposal = new
    groups.changed_event(
        session,
        workflow_id,
        rr,
        old,
        new,
        g.num_samples,
        source,
        observed=observed(g),
        num_jobs_updated=n,
    )
    return {
        "resource_requirements_key": str(rr.id),
        "name": rr.name,
        "old": old,
        "new": new,
        "num_samples": g.num_samples,
        "num_jobs_updated": n,
    }


def evaluate(
    session: Session, workflow_id: int, rr_ids: Iterable[int], mode: str, min_samples: int
) -> list[dict[str, Any]]:
    """Turn the groups' samples into proposals: recorded (suggest) or applied (apply)."""
    changes = []
    rows = locked_groups(session, workflow_id, rr_ids)
    for rr_id in sorted(rows):
        g = rows[rr_id]
        rr = session.get(ResourceRequirements, rr_id)
        if rr is None or g.num_samples < min_samples:
            continue
        new = propose(g)
        old = groups.fields(rr)
        if not groups.differs(old, new):
            continue
        if mode == APPLY:
            changes.append(apply_group(session, workflow_id, rr, g, new, "apply"))
        elif mode == SUGGEST and g.proposal != new:
            g.proposal = new
            post_event(
                session,
                workflow_id,
                "resource_requirements",
                f"Auto-tune suggests resource requirements {rr.name or rr.id}: "
                + ", ".join(f"{k} {old[k]} -> {new[k]}" for k in groups.FIELDS if old[k] != new[k])
                + f" from {g.num_samples} samples",
                type="auto_tune_suggestion",
                resource_requirements_key=str(rr.id),
                name=rr.name,
                old=old,
                new=new,
                num_samples=g.num_samples,
                observed=observed(g),
            )
            changes.append(
                {
                    "resource_requirements_key": str(rr.id),
                    "name": rr.name,
                    "old": old,
                    "new": new,
                    "num_samples": g.num_samples,
                }
            )
    session.flush()
    return changes


def refresh(session: Session, workflow_id: int, mode: str | None = None) -> list[dict[str, Any]]:
    """Sample new stats and act on the groups that got samples, per the workflow's mode."""
    config = session.get(WorkflowConfig, workflow_id)
    assert config is not None, "every workflow has a config row"
    touched = ingest(session, workflow_id)
    mode = mode or config.auto_tune_mode
    if not touched or mode == OFF:
        return []
    return evaluate(session, workflow_id, touched, mode, config.auto_tune_min_samples)


def _begin_write(session: Session) -> None:
    """A write transaction of its own (BEGIN IMMEDIATE on SQLite, see autoscale.report)."""
    if session.in_transaction():
        session.commit()
    if session.get_bind().dialect.name == "sqlite":
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})


def tune_pending(session: Session, workflow_ids: Iterable[int]) -> list[str]:
    """The autoscaler's pass: every tuned workflow with new stats, one transaction each.

    Returns error messages (a broken workflow must not stop the tick or the others).
    """
    tuned: list[int] = []
    for chunk in chunks(sorted(set(workflow_ids))):
        tuned.extend(
            session.scalars(
                select(_CONFIGS.workflow_id).where(
                    _CONFIGS.workflow_id.in_(chunk), _CONFIGS.auto_tune_mode != OFF
                )
            )
        )
    errors = []
    for wf in sorted(tuned):
        try:
            waiting = session.scalar(unsampled(session, "id", 1), {"wf": wf})
            if waiting is None:
                continue
            _begin_write(session)
            refresh(session, wf)
            session.commit()
        except Exception as exc:
            session.rollback()
            log.exception("auto-tune of workflow %s failed", wf)
            errors.append(f"auto-tune of workflow {wf}: {type(exc).__name__}: {exc}")
    if session.in_transaction():
        session.commit()
    return errors
