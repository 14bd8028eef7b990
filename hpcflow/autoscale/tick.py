"""tick(): one pass of the autoscaler over every workflow, callable directly (no sleeping).

Order matters: poll allocations first (their ends reveal lost nodes), then settle lost nodes
(their jobs become ready demand), then scale each workflow.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hpcflow.autoscale import recovery
from hpcflow.autoscale.report import TickReport, begin_write
from hpcflow.autoscale.scale import act, choose_release, plan_workflow, reported
from hpcflow.autoscale.supply import (
    OPEN,
    Alloc,
    Config,
    future_work,
    load_configs,
    open_rows,
    snapshot,
)
from hpcflow.autotune.continuous import tune_pending
from hpcflow.config import Settings
from hpcflow.models import ComputeNode, ScheduledComputeNode, Workflow, WorkflowStatus

log = logging.getLogger(__name__)
STATES = ("pending", "running", "completed", "failed", "canceled", "unknown")
ENDED = ("completed", "failed", "canceled", "timeout")


def tick(session: Session, now: float, submitters: Mapping[str, Any],
         settings: Settings) -> TickReport:
    """Poll, recover lost nodes, then launch and release nodes for every active workflow.

    Commits as it goes (see scale.py); callers pass a fresh session and hold the loop lease.
    """
    started = time.perf_counter()
    report = TickReport()
    active = set(session.scalars(select(Workflow.id).join(
        WorkflowStatus, WorkflowStatus.workflow_id == Workflow.id).where(  # type: ignore[arg-type]
        Workflow.is_archived.is_(False), WorkflowStatus.is_canceled.is_(False))))  # type: ignore[attr-defined]
    rows = open_rows(session)
    # Inactive workflows still get polled and released while they hold allocations.
    wf_ids = sorted(active | {r.workflow_id for r in rows})
    configs = load_configs(session, wf_ids)
    session.commit()
    uncertain = poll(session, configs, rows, submitters, report)
    recover(session, now, settings, report)
    # Auto-tune first, so this tick already sizes allocations from the tuned requirements.
    report.errors.extend(tune_pending(session, active))
    # poll() updated the rows' statuses in place.
    still_open = [r for r in rows if r.status in OPEN]
    scale(session, now, [w for w in wf_ids if configs.get(w)], active, configs, still_open,
          submitters, settings, uncertain, report)
    report.seconds = time.perf_counter() - started
    return report


def scale(session: Session, now: float, wf_ids: list[int], active: set[int],
          configs: dict[int, list[Config]], open_now: list[Any], submitters: Mapping[str, Any],
          settings: Settings, uncertain: set[str], report: TickReport) -> None:
    """Plan every workflow from one batched read, then launch and release workflow by workflow."""
    rows: dict[int, list[Any]] = defaultdict(list)
    for row in open_now:
        rows[row.workflow_id].append(row)
    snap = snapshot(session, [w for w in wf_ids if w in active])
    plans = [plan_workflow(now, w, w in active, configs[w], rows[w], snap, submitters, uncertain,
                           report) for w in wf_ids]
    later = future_work(session, [p.workflow_id for p in plans if p.idle and p.active])
    for plan in plans:
        choose_release(plan, later.get(plan.workflow_id, {}))
    said = reported(session, [p.workflow_id for p in plans if p.unfit])
    session.commit()
    for plan in plans:
        if not (plan.opened or plan.release or plan.unfit):
            continue
        try:
            act(session, now, plan, configs[plan.workflow_id], submitters, settings,
                said.get(plan.workflow_id, set()), report)
        except Exception as exc:  # one broken workflow must not stop the others
            session.rollback()
            log.exception("autoscale of workflow %s failed", plan.workflow_id)
            report.errors.append(f"workflow {plan.workflow_id}: {type(exc).__name__}: {exc}")


def poll(session: Session, configs: dict[int, list[Config]], rows: list[Alloc],
         submitters: Mapping[str, Any], report: TickReport) -> set[str]:
    """One batched status() call per config; returns configs whose state is unsure."""
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
        t = ScheduledComputeNode
        for row, state in changes:
            message = {"message": f"ended: {state}"} if state in ENDED else {}
            session.execute(update(t).where(t.id == row.id, t.status.in_(OPEN))  # type: ignore[attr-defined]
                            .values(status=state, rev=t.rev + 1, **message))
            row.status = state
        session.commit()
    return uncertain


def _state(value: Any) -> str:
    """A submitter's state name (a plain string or an enum), 'unknown' when unrecognised."""
    text = str(getattr(value, "value", value) or "unknown").lower()
    return text if text in STATES or text == "timeout" else "unknown"


def recover(session: Session, now: float, settings: Settings, report: TickReport) -> None:
    """Declare lost the nodes whose lease expired or whose allocation ended; settle their jobs."""
    lease = settings.heartbeat_interval_seconds * settings.lease_intervals
    losses = {loss.node_id: loss for loss in recovery.stale_nodes(session, now, lease)}
    ended = {(r.workflow_id, str(r.scheduler_id)): r.status for r in session.scalars(
        select(ScheduledComputeNode).where(
            ScheduledComputeNode.status.in_(ENDED),  # type: ignore[attr-defined]
            ScheduledComputeNode.workflow_id.in_(  # type: ignore[attr-defined]
                select(ComputeNode.workflow_id).where(ComputeNode.is_active.is_(True)))))}  # type: ignore[attr-defined]
    if ended:
        for node in session.scalars(select(ComputeNode).where(ComputeNode.is_active.is_(True))):  # type: ignore[attr-defined]
            sid = recovery.allocation_of(node) or str(node.pid)
            state = ended.get((node.workflow_id, sid))
            if state and node.id not in losses:
                losses[node.id] = recovery.ended_loss(node, sid, state, now)
    session.commit()
    for node_id in sorted(losses):
        begin_write(session)
        retried, failed = recovery.declare_lost(session, losses[node_id], now)
        session.commit()
        report.lost_nodes.append(node_id)
        report.retried_jobs.extend(retried)
        report.failed_jobs.extend(failed)
