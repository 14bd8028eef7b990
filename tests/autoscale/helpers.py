"""A fake submitter and helpers that build workflows for autoscaler tests through HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcflow.autoscale import TickReport, tick
from hpcflow.config import Settings
from hpcflow.models import Event, Job, ScheduledComputeNode
from hpcflow.models.job import Result
from hpcflow.models.schedulers import SlurmScheduler
from tests.engine.helpers import Api

NOW = 1_700_000_000.0
SETTINGS = Settings(heartbeat_interval_seconds=30, lease_intervals=3)


@dataclass
class Submitted:
    """What FakeSubmitter.submit returns (the SubmitResult shape)."""

    scheduler_id: str
    script: str | None = None
    output_path: str | None = None


class FakeSubmitter:
    """Records submissions; states are set by the test; thread-safe for concurrency tests."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.requests: list[Any] = []
        self.states: dict[str, str] = {}
        self.canceled: list[str] = []
        self.status_calls: list[list[str]] = []
        self.attempts = 0
        self.fail: str | None = None
        self.status_error: str | None = None
        self.before_submit: Callable[[], None] | None = None
        self.lock = threading.Lock()

    def submit(self, request: Any) -> Submitted:
        if self.before_submit is not None:
            self.before_submit()
        with self.lock:
            self.attempts += 1
            if self.fail:
                raise RuntimeError(self.fail)
            self.requests.append(request)
            sid = f"{self.prefix}{1000 + len(self.requests)}"
            self.states[sid] = "pending"
        return Submitted(sid, script=f"#!/bin/bash\n# node {sid}\n", output_path=f"/tmp/{sid}.o")

    def status(self, ids: list[str]) -> dict[str, str]:
        with self.lock:
            self.status_calls.append(list(ids))
            if self.status_error:
                raise RuntimeError(self.status_error)
            return {i: self.states.get(i, "unknown") for i in ids}

    def cancel(self, ids: list[str]) -> None:
        with self.lock:
            self.canceled.extend(ids)
            for i in ids:
                self.states[i] = "canceled"

    @property
    def launched(self) -> int:
        return len(self.requests)


def sessions(app: Any) -> Any:
    """The app's session factory."""
    return app.extensions["hpcflow"].sessions


def run_tick(
    app: Any, submitters: dict[str, Any], now: float = NOW, settings: Settings = SETTINGS
) -> TickReport:
    """One tick on a fresh session, as the loop runs it."""
    with sessions(app)() as session:
        return tick(session, now, submitters, settings)


def slurm_config(api: Api, **fields: Any) -> str:
    """A slurm scheduler config; returns its _id ('slurm_schedulers/N')."""
    body = {
        "name": "cfg",
        "account": "acct",
        "cpus_per_task": 8,
        "mem": "32g",
        "walltime": "04:00:00",
        "max_nodes": 100,
        "max_queued": 100,
        **fields,
    }
    return str(api.post("/slurm_schedulers", body)["_id"])


def add_jobs(
    api: Api, prefix: str, count: int, scheduler: str | None = None, **rr: Any
) -> list[str]:
    """`count` independent jobs sharing one resource requirement; returns their keys."""
    ref = api.rr(f"rr_{prefix}", **rr)
    keys = []
    for i in range(count):
        body: dict[str, Any] = {"resource_requirements": ref}
        if scheduler:
            body["scheduler"] = scheduler
        keys.append(api.job(f"{prefix}{i}", **body)["_key"])
    return keys


def events(app: Any, workflow: str, category: str | None = None) -> list[dict[str, Any]]:
    """Event data of a workflow, oldest first."""
    with sessions(app)() as s:
        stmt = select(Event).where(Event.workflow_id == int(workflow)).order_by(Event.id)
        if category:
            stmt = stmt.where(Event.category == category)
        return [{**e.data, "category": e.category} for e in s.scalars(stmt)]


def scheduled(app: Any, workflow: str | None = None) -> list[ScheduledComputeNode]:
    """Every scheduled compute node row."""
    with sessions(app)() as s:
        stmt = select(ScheduledComputeNode).order_by(ScheduledComputeNode.id)
        if workflow is not None:
            stmt = stmt.where(ScheduledComputeNode.workflow_id == int(workflow))
        return list(s.scalars(stmt))


def job_row(app: Any, key: str) -> Job:
    with sessions(app)() as s:
        job = s.get(Job, int(key))
        assert job is not None
        return job


def results(app: Any, key: str) -> list[Result]:
    with sessions(app)() as s:
        return list(s.scalars(select(Result).where(Result.job_key == key).order_by(Result.id)))


def config_row(app: Any, ref: str) -> SlurmScheduler:
    with sessions(app)() as s:
        row = s.get(SlurmScheduler, int(ref.split("/")[1]))
        assert row is not None
        return row


def set_heartbeat(session: Session, node_key: str, when: float) -> None:
    """Pretend the runner last beat at `when`."""
    from hpcflow.models import ComputeNode

    node = session.get(ComputeNode, int(node_key))
    assert node is not None
    node.last_heartbeat = when
    session.commit()
