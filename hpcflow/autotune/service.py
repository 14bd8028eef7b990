"""What the auto-tune extension routes do: list suggestions, apply them on request."""

from __future__ import annotations

from typing import Any

from pydantic import Field as PField
from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcflow.autotune import continuous, groups
from hpcflow.engine.documents import get_doc, get_workflow
from hpcflow.engine.workflows import ensure_not_archived
from hpcflow.errors import Conflict
from hpcflow.keys import parse_ref
from hpcflow.models import AutoTuneGroup, ResourceRequirements, WorkflowConfig
from hpcflow.models.base import ApiModel

GROUPS = AutoTuneGroup.__table__.c  # type: ignore[attr-defined]
RRS = ResourceRequirements.__table__.c  # type: ignore[attr-defined]


class ApplyIn(ApiModel):
    """Body of apply_auto_tune: which groups (default: every group with enough samples)."""

    resource_requirements: list[str] | None = None
    min_samples: int | None = PField(default=None, ge=1, le=1_000_000)


def _config(session: Session, workflow_id: int) -> WorkflowConfig:
    config = session.get(WorkflowConfig, workflow_id)
    assert config is not None, "every workflow has a config row"
    return config


def _entry(rr: ResourceRequirements, g: AutoTuneGroup | None, k: int) -> dict[str, Any]:
    """One group as the suggestions route shows it."""
    current = groups.fields(rr)
    entry: dict[str, Any] = {
        "resource_requirements_key": str(rr.id),
        "name": rr.name,
        "current": current,
        "num_samples": g.num_samples if g else 0,
        "observed": continuous.observed(g) if g else None,
        "suggested": None,
        "differs": False,
        "last_recorded": g.proposal if g else None,
    }
    if g is not None and g.num_samples >= k:
        entry["suggested"] = continuous.propose(g)
        entry["differs"] = groups.differs(current, entry["suggested"])
    return entry


def suggestions(session: Session, workflow: str | int) -> dict[str, Any]:
    """Every group with its samples and proposal, after taking in new stats (per the mode)."""
    wf = get_workflow(session, workflow)
    config = _config(session, wf.id)
    changes = continuous.refresh(session, wf.id) if not wf.is_archived else []
    tuned = {
        g.resource_requirements_id: g
        for g in session.scalars(select(AutoTuneGroup).where(GROUPS.workflow_id == wf.id))
    }
    rrs = session.scalars(
        select(ResourceRequirements).where(RRS.workflow_id == wf.id).order_by(RRS.id)
    )
    k = config.auto_tune_min_samples
    return {
        "mode": config.auto_tune_mode,
        "min_samples": k,
        "changes": changes,
        "groups": [_entry(rr, tuned.get(rr.id), k) for rr in rrs],
    }


def apply(session: Session, workflow: str | int, body: ApplyIn | None) -> dict[str, Any]:
    """Apply the current proposals of the named groups (or all ready ones), whatever the mode."""
    wf = get_workflow(session, workflow)
    ensure_not_archived(wf)
    body = body or ApplyIn()
    config = _config(session, wf.id)
    k = body.min_samples or config.auto_tune_min_samples
    named = None
    if body.resource_requirements is not None:
        named = []
        for n, ref in enumerate(body.resource_requirements):
            _coll, key = parse_ref(ref, "resource_requirements", f"resource_requirements[{n}]")
            named.append(get_doc(session, ResourceRequirements, wf.id, key).id)
    continuous.ingest(session, wf.id)
    rr_ids = (
        named
        if named is not None
        else list(
            session.scalars(
                select(GROUPS.resource_requirements_id).where(GROUPS.workflow_id == wf.id)
            )
        )
    )
    rows = continuous.locked_groups(session, wf.id, rr_ids)
    applied, unchanged = [], []
    for rr_id in sorted(set(rr_ids)):
        g = rows.get(rr_id)
        rr = session.get(ResourceRequirements, rr_id)
        assert rr is not None
        have = g.num_samples if g else 0
        if g is None or have < k:
            if named is None:
                continue
            raise Conflict(
                f"resource_requirements/{rr_id} ({rr.name}) has {have} samples of "
                f"completed jobs; auto-tune needs {k}",
                field="resource_requirements",
            )
        new = continuous.propose(g)
        if groups.differs(groups.fields(rr), new):
            applied.append(continuous.apply_group(session, wf.id, rr, g, new, "request"))
        else:
            unchanged.append(str(rr_id))
    return {"applied": applied, "unchanged_keys": unchanged, "min_samples": k}
