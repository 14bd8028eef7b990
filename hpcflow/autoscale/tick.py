"""tick(): one pass of the autoscaler over every workflow, callable directly (no sleeping).

Order matters: poll allocations first (their ends reveal lost nodes), then settle lost nodes
(their jobs become ready demand), then scale each workflow.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hpcflow.autoscale import recovery
from hpcflow.autoscale.report import TickReport, begin_write
from hpcflow.autoscale.scale import LeaseLost, act, choose_release, plan_workflow, reported
from hpcflow.autoscale.sets import among
from hpcflow.autoscale.supply import (
    OPEN,
    Alloc,
    Config,
    future_work,
    load_configs,
    open_rows,
    snapshot,
)
from hpcflow.autotune.continuous import OFF, tune_pending
from hpcflow.config import Settings
from hpcflow.models import (
    ComputeNode,
    ScheduledComputeNode,
    Workflow,
    WorkflowConfig,
    WorkflowStatus,
)

log = logging.getLogger(__name__)
STATES = ("pending", "running", "completed", "failed", "canceled", "unknown")
ENDED = ("completed", "failed", "canceled", "timeout")


def tick(
    session: Session,
    now: float,
    submitters: Mapping[str, Any],
    settings: Settings,
    keep: Callable[[], bool] | None = None,
) -> TickReport:
    """Poll, recover lost nodes, then launch and release nodes for every active workflow.

    Commits as it goes (see scale.py); callers pass a fresh session and hold the loop lease.
    `keep` (lease.Keeper.keep) is asked before each launch or release; False stops the tick.
    """
    started = time.perf_counter()
    report = TickReport()
    wf_table, st_table = Workflow.__table__, WorkflowStatus.__table__  # type: ignore[attr-defined]
    wf, st = wf_table.c, st_table.c
    active = set(
        session.scalars(
            select(wf.id)
            .join_from(wf_table, st_table, st.workflow_id == wf.id)
            .where(wf.is_archived.is_(False), st.is_canceled.is_(False))
        )
    )
    rows = open_rows(session)
    # Inactive workflows still get polled and released while they hold allocations.
    wf_ids = sorted(active | {r.workflow_id for r in rows})
    configs = load_configs(session, wf_ids)
    session.commit()
    report.lap("read")
    uncertain, stopped = poll(session, configs, rows, submitters, report)
    report.lap("poll")
    nodes = active_nodes(session)
    lost = recover(session, now, settings, report, stopped, nodes)
    report.lap("recover")
    # Auto-tune first, so this tick already sizes allocations from the tuned requirements.
    report.errors.extend(tune_pending(session, tuned(session, active)))
    report.lap("tune")
    # poll() updated the rows' statuses in place.
    still_open = [r for r in rows if r.status in OPEN]
    scale(
        session,
        now,
        [w for w in wf_ids if configs.get(w)],
        active,
        configs,
        still_open,
        submitters,
        settings,
        uncertain,
        report,
        keep or (lambda: True),
        [n for n in nodes if n.id not in lost],
    )
    report.seconds = time.perf_counter() - started
    return report


def tuned(session: Session, active: set[int]) -> list[int]:
    """Active workflows whose auto-tune is on (most are off; one query finds the few)."""
    if not active:
        return []
    wc = WorkflowConfig.__table__.c  # type: ignore[attr-defined]
    return list(
        session.scalars(
            select(wc.workflow_id).where(
                among(session, wc.workflow_id, active), wc.auto_tune_mode != OFF
            )
        )
    )


def scale(
    session: Session,
    now: float,
    wf_ids: list[int],
    active: set[int],
    configs: dict[int, list[Config]],
    open_now: list[Any],
    submitters: Mapping[str, Any],
    settings: Settings,
    uncertain: set[str],
    report: TickReport,
    keep: Callable[[], bool] = lambda: True,
    nodes: list[Any] | None = None,
) -> None:
    """Plan every workflow from one batched read, then launch and release workflow by workflow."""
    rows: dict[int, list[Any]] = defaultdict(list)
    for row in open_now:
        rows[row.workflow_id].append(row)
    snap = snapshot(session, [w for w in wf_ids if w in active], nodes)
    report.lap("snapshot")
    plans = [
        plan_workflow(now, w, w in active, configs[w], rows[w], snap, submitters, uncertain, report)
        for w in wf_ids
    ]
    report.lap("plan")
    later = future_work(session, [p.workflow_id for p in plans if p.idle and p.active])
    for plan in plans:
        choose_release(plan, later.get(plan.workflow_id, {}))
    said = reported(session, [p.workflow_id for p in plans if p.unfit])
    session.commit()
    report.lap("decide")
    for plan in plans:
        if not (plan.opened or plan.release or plan.unfit):
            continue
        try:
            act(
                session,
                now,
                plan,
                configs[plan.workflow_id],
                submitters,
                settings,
                said.get(plan.workflow_id, set()),
                report,
                keep,
            )
        except LeaseLost:
            report.errors.append("lost the autoscaler lease; another loop acts from here")
            break
        except Exception as exc:  # one broken workflow must not stop the others
            session.rollback()
            log.exception("autoscale of workflow %s failed", plan.workflow_id)
            report.errors.append(f"workflow {plan.workflow_id}: {type(exc).__name__}: {exc}")
    report.lap("act")


def poll(
    session: Session,
    configs: dict[int, list[Config]],
    rows: list[Alloc],
    submitters: Mapping[str, Any],
    report: TickReport,
) -> tuple[set[str], dict[tuple[int, str], str]]:
    """One batched status() call per config.

    Returns the configs whose state is unsure, and the allocations this poll found canceled
    (by workflow and scheduler id).
    """
    by_cfg: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        if row.scheduler_id:
            by_cfg[row.scheduler_config_id].append(row)
    kinds = {c.id: c.kind for cfgs in configs.values() for c in cfgs}
    uncertain: set[str] = set()
    changes: list[tuple[Alloc, str]] = []
    for cfg_id, cfg_rows in by_cfg.items():
        sub = submitters.get(kinds.get(cfg_id, cfg_id.split("/")[0].removesuffix("_schedulers")))
        if sub is None:
            uncertain.add(cfg_id)
            continue
        try:
            found = sub.status([str(r.scheduler_id) for r in cfg_rows])
        except Exception as exc:  # cannot see the queue: assume nothing, launch nothing
            uncertain.add(cfg_id)
            report.errors.append(f"{cfg_id}: status failed: {exc}")
            continue
        report.polled += len(cfg_rows)
        for row in cfg_rows:
            state = _state(found.get(str(row.scheduler_id)))
            if state != row.status and not (row.status == "submitted" and state == "pending"):
                changes.append((row, state))
    if changes:
        begin_write(session)
        t = ScheduledComputeNode.__table__  # type: ignore[attr-defined]
        for row, state in changes:
            message = {"message": f"ended: {state}"} if state in ENDED else {}
            session.execute(
                update(t)
                .where(t.c.id == row.id, t.c.status.in_(OPEN))
                .values(status=state, rev=t.c.rev + 1, **message)
            )
            row.status = state
        session.commit()
    stopped = {
        (row.workflow_id, str(row.scheduler_id)): state
        for row, state in changes
        if state == "canceled"
    }
    return uncertain, stopped


def _state(value: Any) -> str:
    """A submitter's state name (a plain string or an enum), 'unknown' when unrecognised."""
    text = str(getattr(value, "value", value) or "unknown").lower()
    return text if text in STATES or text == "timeout" else "unknown"


def active_nodes(session: Session) -> list[Any]:
    """Every active compute node, as rows (read once per tick: leases and supply use them)."""
    nodes = ComputeNode.__table__  # type: ignore[attr-defined]
    return list(
        session.execute(select(nodes).where(nodes.c.is_active.is_(True)).order_by(nodes.c.id)).all()
    )


def recover(
    session: Session,
    now: float,
    settings: Settings,
    report: TickReport,
    stopped: Mapping[tuple[int, str], str] | None = None,
    nodes: list[Any] | None = None,
) -> set[int]:
    """Declare lost the nodes whose lease expired or whose allocation ended; settle their jobs.

    `stopped` names allocations found canceled this tick: their runners may have left already,
    reporting the jobs they were stopped in; those jobs come back too (recovery.requeue).
    `nodes` are the active nodes (read here when not given). Returns the ids of lost nodes.
    """
    active = active_nodes(session) if nodes is None else nodes
    lease = settings.heartbeat_interval_seconds * settings.lease_intervals
    losses = {loss.node_id: loss for loss in recovery.stale_nodes(active, now, lease)}
    alloc, table = ScheduledComputeNode.__table__.c, ComputeNode.__table__  # type: ignore[attr-defined]
    wfs = {n.workflow_id for n in active}
    ended = (
        {
            (wf, str(sid)): state
            for wf, sid, state in session.execute(
                select(alloc.workflow_id, alloc.scheduler_id, alloc.status).where(
                    alloc.status.in_(ENDED), among(session, alloc.workflow_id, wfs)
                )
            ).all()
        }
        if wfs
        else {}
    )
    for node in active if ended else []:
        sid = recovery.allocation_of(node) or str(node.pid)
        state = ended.get((node.workflow_id, sid))
        if state and node.id not in losses:
            losses[node.id] = recovery.ended_loss(node, sid, state, now)
    if stopped:
        for node in session.execute(
            select(table).where(
                table.c.workflow_id.in_({wf for wf, _sid in stopped}), table.c.is_active.is_(False)
            )
        ).all():
            sid = recovery.allocation_of(node) or str(node.pid)
            state = stopped.get((node.workflow_id, sid))
            if state and node.id not in losses:
                losses[node.id] = recovery.ended_loss(node, sid, state, now)
    session.commit()
    for node_id in sorted(losses):
        begin_write(session)
        retried, failed, lost = recovery.declare_lost(session, losses[node_id], now)
        session.commit()
        if not lost:
            continue
        report.lost_nodes.append(node_id)
        report.retried_jobs.extend(retried)
        report.failed_jobs.extend(failed)
    return set(report.lost_nodes)
