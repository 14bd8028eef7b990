"""Successors and follows (extension): jobs a runner starts the moment their blockers exit there.

A claim may ask for `successors`: blocked jobs whose every unfinished blocker is held by the
claiming node (claimed or running there) or is an earlier successor in the answer, nearest
first. When the last of a successor's blockers exits 0 on that node, the runner starts the job
itself, without waiting a round trip, and names it in its next report's `follow` list. The
report's completions are applied first, which makes the job ready, and the follow then claims and
starts it for the node in the same transaction, so no other node can take it in between. A follow
whose job is not ready by then, or was changed since the hint (edited, reset, canceled), is
refused and the runner kills the process. The server stays the only judge of readiness; the
runner only saves the round trip between a blocker's exit and its successor's start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, aliased

from hpcflow.engine import states
from hpcflow.engine.batch_items import ClaimRequest, CompleteJobsIn, JobResult, Outcome, locked_job
from hpcflow.engine.claims import Free, free_from
from hpcflow.engine.completion import start_locked
from hpcflow.engine.initialize import EDGES, JOBS
from hpcflow.engine.job_docs import render_jobs
from hpcflow.engine.statements import cached_statement, status_in, status_literal
from hpcflow.errors import Conflict, HpcflowError, Invalid, NotFound
from hpcflow.keys import parse_key
from hpcflow.models import Job
from hpcflow.models.nodes import NodeResources

MAX_LEVELS = 64  # one query per level: a chain of successors costs one query per link
HELD = (states.SUBMITTED_PENDING, states.SUBMITTED)


def successors(
    session: Session,
    workflow_id: int,
    node_id: int,
    held: list[int],
    limit: int,
    size: Free,
    sched: str | None,
    known: Sequence[int] = (),
) -> list[tuple[Job, list[int]]]:
    """Blocked jobs that only wait for jobs this node holds, for successors the runner already
    knows (`known`) or for earlier successors, with the ids of those blockers; each fits `size`
    and the node's scheduler config. Known successors are walked from, not returned again, so
    a runner topping up its hints costs a query per new hint rather than per hint it holds."""
    if not (held or known) or limit <= 0:
        return []
    seen = {*held, *known}
    waiting: dict[int, list[int]] = {}  # candidate -> its blockers held so far
    taken: list[int] = []
    levels: list[tuple[str, Callable[[str], Any], Sequence[int]]] = [
        ("successors:first", _first_level, held),
        ("successors", _next_level, known),
    ]
    for _ in range(MAX_LEVELS):
        rows: list[Any] = []
        for name, build, ids in levels:
            if ids:
                params = {"wf": workflow_id, "ids": ids, "n": 4 * limit, "node": node_id}
                rows += session.execute(cached_statement(session, name, build), params)
        frontier: list[int] = []
        for row in rows:
            froms = waiting.setdefault(row.to_id, [])
            froms.append(row.from_id)
            if (
                row.to_id not in seen
                and len(froms) == row.blocked_count
                and size.fits(row)
                and (row.scheduler_config_id is None or row.scheduler_config_id == sched)
                and len(taken) < limit
            ):
                seen.add(row.to_id)
                taken.append(row.to_id)
                frontier.append(row.to_id)
        if not frontier or len(taken) >= limit:
            break
        levels = [("successors", _next_level, frontier)]
    if not taken:
        return []
    load = cached_statement(
        session,
        "successor_jobs",
        lambda _d: select(Job).where(JOBS.c.id.in_(bindparam("ids", expanding=True))),
    )
    jobs = {j.id: j for j in session.scalars(load, {"ids": taken})}
    return [(jobs[i], sorted(waiting[i])) for i in taken if i in jobs]


def _first_level(_dialect: str) -> Any:
    return _level(first=True)


def _next_level(_dialect: str) -> Any:
    return _level(first=False)


def _level(*, first: bool) -> Any:
    """Blocked dependents of `ids` with what the fit checks read; the first level also checks
    that the ids are jobs this node holds."""
    dep = aliased(JOBS)
    stmt = (
        select(
            EDGES.c.from_id,
            EDGES.c.to_id,
            dep.c.blocked_count,
            dep.c.num_cpus,
            dep.c.num_gpus,
            dep.c.num_nodes,
            dep.c.memory_bytes,
            dep.c.runtime_seconds,
            dep.c.scheduler_config_id,
        )
        .join(dep, dep.c.id == EDGES.c.to_id)
        .where(
            EDGES.c.workflow_id == bindparam("wf"),
            EDGES.c.name == "blocks",
            EDGES.c.from_id.in_(bindparam("ids", expanding=True)),
            dep.c.status == status_literal(states.BLOCKED),
        )
        .order_by(EDGES.c.to_id)
        .limit(bindparam("n"))
    )
    if first:
        src = aliased(JOBS)
        stmt = stmt.join(src, src.c.id == EDGES.c.from_id).where(
            src.c.compute_node_id == bindparam("node"), status_in(src.c.status, HELD)
        )
    return stmt


def check_follow(job: Job, seen_rev: str) -> None:
    """409 unless the job became ready in this request from the revision the hint showed.

    Unblocking bumps a job's revision once (engine/unblock.py), so a job nobody touched since the
    hint is ready at exactly seen + 1; anything else means it changed under the runner."""
    if job.status != states.READY:
        raise Conflict(
            f"jobs/{job.id} is {job.status}, not ready: its blockers have not all finished",
            field="status",
        )
    if not seen_rev.isdigit() or job.rev != int(seen_rev) + 1:
        raise Conflict(
            f"jobs/{job.id} changed since _rev {seen_rev} (now _rev {job.rev})", field="_rev"
        )


def claim_follow(job: Job, node_id: int) -> None:
    """ready -> submitted_pending on this node (the caller starts it next)."""
    states.change(job, states.SUBMITTED_PENDING)
    job.compute_node_id = node_id
    job.claimed_at = time.time()


def apply_follows(
    session: Session,
    wf: int,
    jobs: dict[int, Job],
    body: CompleteJobsIn,
    started_from: dict[str, str],
    node_id: int,
    out: Outcome,
    finish: Callable[[list[JobResult]], None],
) -> None:
    """Claim and start the followed jobs that the completions made ready, then `finish` their
    own completions, round after round (along a chain each round readies the next follow)."""
    results = {r.key: r for r in body.jobs}
    waiting = {item.key: item.rev for item in body.follow}
    while waiting:
        # The completions changed rows below the session's objects: load the ready ones anew
        # (reloading every waiting job each round cost a job load per follow per round).
        fresh = _reload(session, [parse_key(k, "key") for k in waiting], ready=True)
        if not fresh:
            break
        jobs.update((j.id, j) for j in fresh)
        started = []
        for job in fresh:
            key = str(job.id)
            rev = waiting.pop(key)
            try:
                check_follow(job, rev)
            except Conflict as exc:
                _refuse(out, key, exc, key in results)
                continue
            claim_follow(job, node_id)
            started.append(job)
            started_from[key] = rev
        start_locked(session, wf, started, body.run_id, node_id)
        out.record("started", started)
        # Not flushed here: finish_jobs writes each job once, its start and finish together.
        finish([results[str(j.id)] for j in started if str(j.id) in results])
    if waiting:  # refused: read them anew so the message names their real status
        jobs.update((j.id, j) for j in _reload(session, [int(k) for k in waiting]))
    for key, rev in waiting.items():
        try:
            check_follow(locked_job(jobs, key, wf), rev)
        except (Conflict, NotFound) as exc:
            _refuse(out, key, exc, key in results)


def _refuse(out: Outcome, key: str, exc: HpcflowError, completed: bool) -> None:
    """A refused follow, and its completion when the same request carried one."""
    out.fail("follow", key, exc)
    if completed:
        out.fail("complete", key, Conflict(f"jobs/{key}: its follow was refused", field="follow"))


def _reload(session: Session, ids: list[int], *, ready: bool = False) -> list[Job]:
    """These jobs (only the ready ones with `ready`) read anew, in key order: their rows
    changed under the session's objects."""
    if not ids:
        return []

    def build(_dialect: str) -> Any:
        stmt = select(Job).where(JOBS.c.id.in_(bindparam("ids", expanding=True)))
        if ready:
            stmt = stmt.where(JOBS.c.status == status_literal(states.READY))
        return stmt.order_by(JOBS.c.id).execution_options(populate_existing=True)

    name = "follow_reload:ready" if ready else "follow_reload"
    return list(session.scalars(cached_statement(session, name, build), {"ids": ids}))


def successor_docs(
    session: Session,
    wf: int,
    node_id: int,
    claim: ClaimRequest,
    size: NodeResources | None,
    claimed: list[Job],
) -> list[dict[str, Any]]:
    """The claim's successors as documents, each with `after`: the keys it still waits for."""
    held = [parse_key(k, "held", missing=Invalid) for k in claim.held]
    held += [j.id for j in claimed]
    known = [parse_key(k, "known", missing=Invalid) for k in claim.known]
    budget = free_from(size or claim.resources)
    budget.runtime = free_from(claim.resources).runtime
    sched = claim.resources.scheduler_config_id
    found = successors(session, wf, node_id, held, claim.successors, budget, sched, known)
    docs = render_jobs(session, [job for job, _ in found])
    return [
        {"job": doc, "after": [str(b) for b in blockers]}
        for doc, (_, blockers) in zip(docs, found, strict=True)
    ]
