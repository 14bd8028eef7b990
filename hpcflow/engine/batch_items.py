"""The batch request's items: their models, request-level validation and the per-item outcome."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import Field as PField

from hpcflow.engine import states
from hpcflow.engine.claims import MAX_LIMIT
from hpcflow.errors import HpcflowError, Invalid, NotFound
from hpcflow.keys import parse_key
from hpcflow.models import Job
from hpcflow.models.base import ApiModel
from hpcflow.models.job import ResultIn
from hpcflow.models.nodes import NodeResources

MAX_SUCCESSORS = 256
MAX_ITEMS = 10_000
MAX_LOOKAHEAD = 10_000


class JobRev(ApiModel):
    """A job and the revision the caller last saw."""

    key: str = PField(min_length=1)
    rev: str = PField(min_length=1)


class JobResult(JobRev):
    """A finished run of a job: its final status and result."""

    status: str
    result: ResultIn


class ClaimRequest(ApiModel):
    """Claim after the updates: jobs packed into `resources`, plus a queue of `lookahead`."""

    resources: NodeResources
    sort_method: str | None = None
    limit: int | None = PField(default=None, ge=0, le=MAX_LIMIT)
    # Further jobs that each fit the compute node's registered resources, for the runner to
    # start as its resources free up (submitted_pending on that node until then).
    lookahead: int = PField(default=0, ge=0, le=MAX_LOOKAHEAD)
    # Blocked jobs that wait only for jobs in `held` (this node's claimed or running jobs) or
    # for earlier successors: the runner starts them itself as their blockers exit (follow.py).
    successors: int = PField(default=0, ge=0, le=MAX_SUCCESSORS)
    held: list[str] = PField(default_factory=list, max_length=MAX_ITEMS)
    # Successors the runner already holds hints for: walked from, not returned again.
    known: list[str] = PField(default_factory=list, max_length=MAX_ITEMS)


class StartJobsIn(ApiModel):
    """Body of start_jobs."""

    run_id: int = PField(ge=0)
    compute_node_key: str = PField(min_length=1)
    jobs: list[JobRev] = PField(max_length=MAX_ITEMS)


class CompleteJobsIn(ApiModel):
    """Body of complete_jobs: starts, completions and releases, applied in that order, then
    an optional claim. A job may be started and completed in one request; its completion then
    names the same rev as its start."""

    run_id: int = PField(ge=0)
    compute_node_key: str = PField(min_length=1)
    start: list[JobRev] = PField(default_factory=list, max_length=MAX_ITEMS)
    jobs: list[JobResult] = PField(default_factory=list, max_length=MAX_ITEMS)
    # Claimed jobs the runner gives back unstarted (it is stopping): back to ready.
    release: list[JobRev] = PField(default_factory=list, max_length=MAX_ITEMS)
    # Successors the runner started when their blockers exited there, each naming the _rev
    # of its hint: claimed and started once the completions have made them ready.
    follow: list[JobRev] = PField(default_factory=list, max_length=MAX_ITEMS)
    claim: ClaimRequest | None = None


class Outcome:
    """What happened to each item: applied (key, rev, status) or skipped with an error."""

    def __init__(self) -> None:
        self.done: dict[str, list[dict[str, Any]]] = {
            "started": [],
            "completed": [],
            "released": [],
        }
        self.errors: list[dict[str, Any]] = []

    def fail(self, operation: str, key: str, exc: HpcflowError) -> None:
        """Record a skipped item with the HTTP code its single-job operation would return."""
        self.errors.append(
            {"_key": key, "operation": operation, "code": exc.status, "message": str(exc)}
        )

    def record(self, bucket: str, jobs: Iterable[Job]) -> None:
        """Record applied items with the job's new revision and status."""
        self.done[bucket].extend(
            {"_key": str(j.id), "_rev": str(j.rev), "status": j.status} for j in jobs
        )


def _keys(items: list[Any], what: str) -> dict[str, int]:
    """Parse every key once; a malformed or repeated key fails the whole request."""
    parsed: dict[str, int] = {}
    for item in items:
        if item.key in parsed:
            raise Invalid(f"job {item.key!r} appears twice in {what}", field=what)
        parsed[item.key] = parse_key(item.key, "key", missing=Invalid)
    return parsed


def validate(body: CompleteJobsIn) -> dict[str, int]:
    """Request-level checks (nothing depends on the database): 400/422 naming the culprit."""
    follows = _keys(body.follow, "follow")
    again = set(follows) & set(_keys(body.start, "start"))
    if again:
        raise Invalid(f"job {sorted(again)[0]!r} is both started and followed", field="follow")
    keys = _keys(body.start, "start") | _keys(body.jobs, "jobs") | follows
    both = set(_keys(body.release, "release")) & set(keys)
    if both:
        raise Invalid(
            f"job {sorted(both)[0]!r} is both released and started or completed", field="release"
        )
    for item in body.jobs:
        states.validate_status(item.status, allowed=sorted(states.FINISHED))
        if item.result.job_key.rpartition("/")[2] != item.key:
            raise Invalid(
                f"jobs[{item.key}]: result.job_key {item.result.job_key!r} does not "
                f"match job {item.key}",
                field="job_key",
            )
        if item.result.run_id != body.run_id:
            raise Invalid(
                f"jobs[{item.key}]: result.run_id {item.result.run_id} does not match "
                f"run_id {body.run_id}",
                field="run_id",
            )
    return keys | _keys(body.release, "release")


def locked_job(jobs: dict[int, Job], key: str, workflow_id: int) -> Job:
    """The item's job among those the request locked; 404 (skipped) when it does not exist."""
    job = jobs.get(parse_key(key, "key"))
    if job is None:
        raise NotFound(f"jobs {key!r} not found in workflow {workflow_id}", field="key")
    return job
