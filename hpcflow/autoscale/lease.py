"""The loop lease: one database row taken by compare-and-set, so one autoscaler acts at a time.

Every gunicorn worker and server replica runs a loop; before each tick a loop tries to take the
row (free, lapsed, or already its own). PostgreSQL re-checks the WHERE clause after waiting on
the row lock and SQLite serializes writers, so two loops can never both win the same lease.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable

from sqlalchemy import or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from hpcflow.db import transaction
from hpcflow.models import AutoscalerLease

LEASE_ID = 1
_LEASE = AutoscalerLease.__table__  # type: ignore[attr-defined]


def new_holder() -> str:
    """A name unique to this loop: host, process and a random part for threads."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _ensure_row(session: Session) -> None:
    """Create the single lease row if it is missing (both racers may try; one insert wins)."""
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    session.execute(
        dialect.insert(AutoscalerLease)
        .values(id=LEASE_ID, holder=None, expires_at=0.0)
        .on_conflict_do_nothing(index_elements=["id"])
    )


def acquire(sessions: sessionmaker[Session], holder: str, now: float, ttl: float) -> bool:
    """Take or renew the lease until now + ttl; False when another live loop holds it."""
    with transaction(sessions, immediate=True) as session:
        _ensure_row(session)
        taken = session.execute(
            update(_LEASE)
            .where(
                _LEASE.c.id == LEASE_ID, or_(_LEASE.c.holder == holder, _LEASE.c.expires_at < now)
            )
            .values(holder=holder, expires_at=now + ttl)
        )
        return bool(taken.rowcount)  # type: ignore[attr-defined]


def release(sessions: sessionmaker[Session], holder: str) -> None:
    """Give the lease up at shutdown so another loop need not wait for it to lapse."""
    with transaction(sessions, immediate=True) as session:
        session.execute(
            update(_LEASE)
            .where(_LEASE.c.id == LEASE_ID, _LEASE.c.holder == holder)
            .values(expires_at=0.0)
        )


class Keeper:
    """Keeps the lease while a tick acts: renewed once a quarter of its time has passed.

    A tick that launches many nodes (each sbatch may take a second or more) can outlast the
    lease; without renewal another loop could take it over and launch the same nodes again.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        holder: str,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self.renewed = clock()

    def keep(self) -> bool:
        """True while this loop still holds the lease (renewing it when due)."""
        now = self.clock()
        if now - self.renewed < self.ttl / 4:
            return True
        if not acquire(self.sessions, self.holder, now, self.ttl):
            return False
        self.renewed = now
        return True
