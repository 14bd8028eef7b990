"""Resource-requirement groups: which jobs share a document, and changing a group's numbers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, case, select, update
from sqlalchemy.orm import Session

from hpcflow.engine import states
from hpcflow.engine.events import post_event
from hpcflow.engine.initialize import EDGES, JOBS, chunks
from hpcflow.engine.job_docs import rr_internal
from hpcflow.models import ResourceRequirements
from hpcflow.units import parse_duration, parse_memory

# Jobs no runner holds: their numbers can change (claims and the autoscaler read them). Claimed
# and running jobs keep what they started with; finished jobs take the new numbers so that a
# restart runs with them (what each past run asked for stays on its result).
HELD = (states.SCHEDULED, states.SUBMITTED_PENDING, states.SUBMITTED)
UNCLAIMED = tuple(s for s in states.STATUSES if s not in HELD)
FIELDS = ("memory", "num_cpus", "runtime")


def groups_of(session: Session, workflow_id: int, job_ids: Iterable[int]) -> dict[int, int]:
    """Job id -> resource-requirements id, for the jobs that have one."""
    found: dict[int, int] = {}
    for chunk in chunks(sorted(set(job_ids))):
        for job, rr in session.execute(
            select(EDGES.c.from_id, EDGES.c.to_id).where(
                EDGES.c.workflow_id == workflow_id,
                EDGES.c.name == "requires",
                EDGES.c.from_id.in_(chunk),
            )
        ):
            found[job] = rr
    return found


def members(workflow_id: int, rr_id: int) -> Any:
    """SQL for the ids of the jobs that require this document."""
    return select(EDGES.c.from_id).where(
        EDGES.c.workflow_id == workflow_id, EDGES.c.name == "requires", EDGES.c.to_id == rr_id
    )


def fields(rr: ResourceRequirements) -> dict[str, Any]:
    """The tunable fields of a resource-requirements document."""
    return {"memory": rr.memory, "num_cpus": rr.num_cpus, "runtime": rr.runtime}


def numbers(values: dict[str, Any]) -> tuple[int, int, float]:
    """(memory bytes, CPUs, runtime seconds) of tunable fields."""
    return (
        parse_memory(values["memory"]),
        int(values["num_cpus"]),
        parse_duration(values["runtime"]),
    )


def differs(old: dict[str, Any], new: dict[str, Any], slack: float = 0.05) -> bool:
    """True when `new` asks for more anywhere, or for noticeably less (beyond `slack`)."""
    (om, oc, ort), (nm, nc, nrt) = numbers(old), numbers(new)
    grows = nm > om or nc > oc or nrt > ort
    shrinks = nm < om * (1 - slack) or nc < oc or nrt < ort * (1 - slack)
    return grows or shrinks


def set_group(
    session: Session,
    workflow_id: int,
    rr: ResourceRequirements,
    new: dict[str, Any],
    statuses: Sequence[str] = UNCLAIMED,
) -> int:
    """Write new numbers to the document and, in one statement, to its jobs in `statuses`.

    A job escalated after being killed keeps a larger limit of its own. Returns the number of
    jobs changed.
    """
    for name in FIELDS:
        setattr(rr, name, new[name])
    rr.rev += 1
    session.flush()
    want = rr_internal(rr)
    mem, runtime = want["memory_bytes"], want["runtime_seconds"]
    escalated = JOBS.c.num_escalations > 0
    cond = [
        JOBS.c.workflow_id == workflow_id,
        JOBS.c.id.in_(members(workflow_id, rr.id)),
        JOBS.c.status.in_(list(statuses)),
    ]
    if session.get_bind().dialect.name != "sqlite":
        # Row locks in key order, as completion takes them, so the two cannot deadlock.
        session.execute(select(JOBS.c.id).where(*cond).order_by(JOBS.c.id).with_for_update())
    values = {
        "num_cpus": want["num_cpus"],
        "num_gpus": want["num_gpus"],
        "num_nodes": want["num_nodes"],
        "rev": JOBS.c.rev + 1,
        "memory_bytes": case(
            (and_(escalated, JOBS.c.memory_bytes > mem), JOBS.c.memory_bytes), else_=mem
        ),
        "runtime_seconds": case(
            (and_(escalated, JOBS.c.runtime_seconds > runtime), JOBS.c.runtime_seconds),
            else_=runtime,
        ),
    }
    result = session.execute(update(JOBS).where(*cond).values(**values))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def changed_event(
    session: Session,
    workflow_id: int,
    rr: ResourceRequirements,
    old: dict[str, Any],
    new: dict[str, Any],
    num_samples: int,
    source: str,
    **data: Any,
) -> None:
    """The event every change of a group's requirements leaves: old, new and sample count."""
    parts = [f"{k} {old[k]} -> {new[k]}" for k in FIELDS if old[k] != new[k]]
    post_event(
        session,
        workflow_id,
        "resource_requirements",
        f"Auto-tune ({source}) set resource requirements {rr.name or rr.id}: "
        + (", ".join(parts) or "no change")
        + f" from {num_samples} samples",
        type="auto_tune",
        source=source,
        resource_requirements_key=str(rr.id),
        name=rr.name,
        old=old,
        new=new,
        num_samples=num_samples,
        **data,
    )
