"""A workflow's turn in a tick: plan (pack demand into supply), then launch and release.

Planning reads nothing itself: tick() reads every workflow in a few batched queries first. Every
write after a submitter call is its own short transaction, so a slow sbatch never holds database
locks and an allocation that was launched is recorded even if a later one fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hpcflow.autoscale import guards
from hpcflow.autoscale.demand import pack
from hpcflow.autoscale.report import TickReport, begin_write
from hpcflow.autoscale.request import node_request
from hpcflow.autoscale.sets import among
from hpcflow.autoscale.supply import (
    CANCELABLE,
    QUEUED,
    TABLES,
    Config,
    Snapshot,
    Unfit,
    demand,
    supply,
)
from hpcflow.config import Settings
from hpcflow.engine import states
from hpcflow.engine.events import post_event
from hpcflow.models import Event, Job, ScheduledComputeNode, WorkflowConfig

UNFIT_CATEGORY = "unschedulable"


class LeaseLost(Exception):
    """Another loop holds the lease now: this tick must not launch or cancel anything more."""


def launch_limit(
    cfg: Config, rows: list[Any], uncertain: set[str], submitters: Mapping[str, Any]
) -> int:
    """How many nodes the config may launch now: 0 while paused, unsure or without a shape."""
    if cfg.row.is_paused or cfg.shape is None or cfg.kind not in submitters:
        return 0
    # An allocation in an unknown state may be running: never launch on top of it.
    if cfg.id in uncertain or any(r.status == "unknown" for r in rows):
        return 0
    queued = sum(1 for r in rows if r.status in QUEUED)
    return max(0, min(cfg.row.max_nodes - len(rows), cfg.row.max_queued - queued))


@dataclass
class Plan:
    """What one workflow needs this tick: nodes to launch, queued nodes to cancel, unfit jobs."""

    workflow_id: int
    active: bool
    opened: dict[str, int] = field(default_factory=dict)
    idle: list[Any] = field(default_factory=list)
    release: dict[str, list[Any]] = field(default_factory=dict)
    unfit: list[Unfit] = field(default_factory=list)


def plan_workflow(
    now: float,
    workflow_id: int,
    active: bool,
    configs: list[Config],
    rows: list[Any],
    snap: Snapshot,
    submitters: Mapping[str, Any],
    uncertain: set[str],
    report: TickReport,
) -> Plan:
    """Pack the ready jobs into runners, queued nodes and new nodes (no database access)."""
    plan = Plan(workflow_id, active)
    if not active:
        # A canceled or archived workflow needs nothing that is still waiting in a queue.
        plan.idle = [r for r in rows if r.status in CANCELABLE]
        return plan
    by_cfg: dict[str, list[Any]] = {c.id: [] for c in configs}
    for row in rows:
        by_cfg.setdefault(row.scheduler_config_id, []).append(row)
    wanted = demand(workflow_id, snap.ready.get(workflow_id, []), configs)
    bins = supply(now, snap.nodes.get(workflow_id, []), snap.used, configs, rows)
    limits = {c.id: launch_limit(c, by_cfg[c.id], uncertain, submitters) for c in configs}
    shapes = {c.id: c.shape for c in configs if c.shape is not None}
    plan.opened, left = pack(wanted.groups, bins, shapes, limits)
    report.ready_jobs += sum(g.count for g in wanted.groups)
    report.unplaced_jobs += left
    plan.idle = [
        b.ref for b in bins if b.kind == "queued" and b.used == 0 and b.ref.status in CANCELABLE
    ]
    plan.unfit = wanted.unfit
    return plan


def choose_release(plan: Plan, later: dict[str | None, int]) -> None:
    """Idle queued nodes are released unless blocked jobs will soon need them."""
    for row in plan.idle:
        if plan.active and (later.get(row.scheduler_config_id) or later.get(None)):
            continue
        plan.release.setdefault(row.scheduler_config_id, []).append(row)


def reported(session: Session, workflow_ids: list[int]) -> dict[int, set[str]]:
    """Unfit-job events already posted, by workflow, so each is said once."""
    said: dict[int, set[str]] = {}
    e = Event.__table__.c  # type: ignore[attr-defined]
    if not workflow_ids:
        return said
    # Only the key leaves the database, not each event's whole document.
    for wf, key in session.execute(
        select(e.workflow_id, e.data["dedup"].as_string()).where(
            among(session, e.workflow_id, workflow_ids), e.category == UNFIT_CATEGORY
        )
    ):
        said.setdefault(wf, set()).add(key)
    return said


def first_ready(session: Session, workflow_id: int, unfit: Unfit) -> int | None:
    """The lowest key among the ready jobs of an unfit group (for the event's message)."""
    need, j = unfit.need, Job.__table__.c  # type: ignore[attr-defined]
    if need is None:
        return None
    sched = (
        j.scheduler_config_id == unfit.config_id
        if unfit.config_id
        else or_(j.scheduler_config_id.is_(None), j.scheduler_config_id == "")
    )
    return session.scalar(
        select(func.min(j.id)).where(
            j.workflow_id == workflow_id,
            j.status == states.READY,
            sched,
            j.num_cpus == need.cpus,
            j.memory_bytes == need.memory,
            j.num_gpus == need.gpus,
            j.num_nodes == need.nodes,
            j.runtime_seconds == need.runtime,
        )
    )


def act(
    session: Session,
    now: float,
    plan: Plan,
    configs: list[Config],
    submitters: Mapping[str, Any],
    settings: Settings,
    said: set[str],
    report: TickReport,
    keep: Callable[[], bool] = lambda: True,
) -> None:
    """Post new unfit events, launch the planned nodes, cancel the released ones."""
    fresh = [u for u in plan.unfit if u.key not in said]
    if fresh:
        begin_write(session)
        for u in fresh:
            if u.first_job is None:
                u.first_job = first_ready(session, plan.workflow_id, u)
            post_event(
                session,
                plan.workflow_id,
                UNFIT_CATEGORY,
                u.message(),
                type="unschedulable",
                dedup=u.key,
                job_key=str(u.first_job),
                num_jobs=u.count,
                reason=u.reason,
            )
            report.events += 1
        session.commit()
    by_id = {c.id: c for c in configs}
    for cfg_id, n in plan.opened.items():
        _launch(
            session, now, plan.workflow_id, by_id[cfg_id], n, submitters, settings, report, keep
        )
    for cfg_id, idle_rows in plan.release.items():
        cfg = by_id.get(cfg_id)
        sub = submitters.get(cfg.kind) if cfg else None
        if sub is not None:
            if not keep():
                raise LeaseLost
            _release(session, plan.workflow_id, cfg_id, idle_rows, sub, plan.active, report)


def _launch(
    session: Session,
    now: float,
    workflow_id: int,
    cfg: Config,
    n: int,
    submitters: Mapping[str, Any],
    settings: Settings,
    report: TickReport,
    keep: Callable[[], bool] = lambda: True,
) -> None:
    """Submit n nodes one by one; the first failure ends this config's turn."""
    sub = submitters[cfg.kind]
    table = TABLES[cfg.collection]
    wc = WorkflowConfig.__table__.c  # type: ignore[attr-defined]
    idle = session.scalar(
        select(wc.compute_node_wait_for_new_jobs_seconds).where(wc.workflow_id == workflow_id)
    )
    row = session.get(table, cfg.row.id)
    document = row.to_doc() if row is not None else None
    session.commit()  # no read transaction may stay open across a slow submit
    if document is None:  # deleted since the tick read it
        return
    request = node_request(workflow_id, cfg, document, settings, idle)
    launched: list[str] = []
    try:
        for _ in range(n):
            if not keep():
                raise LeaseLost
            sid = _submit_one(session, now, workflow_id, cfg, table, sub, request, report)
            if sid is None:
                break
            launched.append(sid)
    finally:
        if launched:
            begin_write(session)
            post_event(
                session,
                workflow_id,
                "autoscale",
                f"Launched {len(launched)} nodes of {cfg.id}: {', '.join(launched)}",
                type="launch",
                scheduler_config_id=cfg.id,
                scheduler_ids=launched,
            )
            session.commit()


def _submit_one(
    session: Session,
    now: float,
    workflow_id: int,
    cfg: Config,
    table: Any,
    sub: Any,
    request: Any,
    report: TickReport,
) -> str | None:
    """One submit and its record: the new scheduler id, or None (failure counted)."""
    try:
        result = sub.submit(request)
    except Exception as exc:  # any submitter failure counts toward the pause guard
        text = str(exc) or type(exc).__name__
        report.errors.append(f"{cfg.id}: submit failed: {text}")
        begin_write(session)
        if guards.record_failure(session, table, cfg.row.id, text):
            report.paused.append(cfg.id)
        session.commit()
        return None
    sid = str(result.scheduler_id)
    begin_write(session)
    session.add(
        ScheduledComputeNode(
            workflow_id=workflow_id,
            scheduler_id=sid,
            scheduler_config_id=cfg.id,
            status="pending",
            script=getattr(result, "script", None),
            output_path=_text(getattr(result, "output_path", None)),
            submitted_at=now,
        )
    )
    guards.record_success(session, table, cfg.row.id)
    session.commit()
    report.launched[cfg.id] = report.launched.get(cfg.id, 0) + 1
    return sid


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _release(
    session: Session,
    workflow_id: int,
    cfg_id: str,
    rows: list[Any],
    sub: Any,
    active: bool,
    report: TickReport,
) -> None:
    """Cancel queued allocations in one call and record why."""
    ids = [str(r.scheduler_id) for r in rows]
    try:
        sub.cancel(ids)
    except Exception as exc:  # leave the rows open; the next tick polls and retries
        report.errors.append(f"{cfg_id}: cancel of {', '.join(ids)} failed: {exc}")
        return
    why = "no work left" if active else "the workflow is canceled or archived"
    begin_write(session)
    for row in rows:
        fresh = session.get(ScheduledComputeNode, row.id, populate_existing=True)
        if fresh is not None and fresh.status in CANCELABLE:
            fresh.status = "canceled"
            fresh.message = f"released: {why}"
            fresh.rev += 1
    post_event(
        session,
        workflow_id,
        "autoscale",
        f"Released {len(ids)} queued nodes of {cfg_id} ({why}): {', '.join(ids)}",
        type="release",
        scheduler_config_id=cfg_id,
        scheduler_ids=ids,
    )
    session.commit()
    report.canceled.extend(f"{cfg_id}:{i}" for i in ids)
