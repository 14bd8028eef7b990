"""What one tick did, and the one way the autoscaler opens a write transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy.orm import Session


@dataclass
class TickReport:
    """Counts and ids of everything one tick decided, for tests, logs and benchmarks."""

    launched: dict[str, int] = field(default_factory=dict)
    canceled: list[str] = field(default_factory=list)
    polled: int = 0
    lost_nodes: list[int] = field(default_factory=list)
    retried_jobs: list[int] = field(default_factory=list)
    failed_jobs: list[int] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    ready_jobs: int = 0
    unplaced_jobs: int = 0
    events: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Seconds spent in each phase (read, poll, recover, tune, snapshot, plan, decide, act).
    phases: dict[str, float] = field(default_factory=dict)
    _lap: float = field(default_factory=time.perf_counter, repr=False)

    def lap(self, phase: str) -> None:
        """Charge the time since the last lap to `phase`."""
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._lap
        self._lap = now

    @property
    def is_quiet(self) -> bool:
        """Nothing was launched, released, recovered, paused or failed (the loop may back off)."""
        return not (
            self.total_launched
            or self.canceled
            or self.lost_nodes
            or self.retried_jobs
            or self.failed_jobs
            or self.paused
            or self.errors
            or self.events
        )

    @property
    def total_launched(self) -> int:
        """Nodes launched over every config."""
        return sum(self.launched.values())


def begin_write(session: Session) -> None:
    """End any read snapshot and start a write transaction (BEGIN IMMEDIATE on SQLite).

    A deferred SQLite transaction that read first fails to upgrade when a runner wrote in
    between; taking the write lock up front makes it wait its turn instead.
    """
    if session.in_transaction():
        session.commit()
    if session.get_bind().dialect.name == "sqlite":
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
