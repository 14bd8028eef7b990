"""The loop lease: one database row taken by compare-and-set, so one autoscaler acts at a time.

Every gunicorn worker and server replica runs a loop; before each tick a loop tries to take the
row (free, lapsed, or already its own). PostgreSQL re-checks the WHERE clause after waiting on
the row lock and SQLite serializes writers, so two loops can never both win the same lease.
"""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from hpcflow.db import transaction
from hpcflow.models import AutoscalerLease

LEASE_ID = 1


def new_holder() -> str:
    """A name unique to this loop: host, process and a random part for threads."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _ensure_row(session: Session) -> None:
    """Create the single lease row if it is missing (both racers may try; one insert wins)."""
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    session.execute(dialect.insert(AutoscalerLease).values(id=LEASE_ID, holder=None,
                                                           expires_at=0.0)
                    .on_conflict_do_nothing(index_elements=["id"]))


def acquire(sessions: sessionmaker[Session], holder: str, now: float, ttl: float) -> bool:
    """Take or renew the lease until now + ttl; False when another live loop holds it."""
    with transaction(sessions, immediate=True) as session:
        _ensure_row(session)
        taken = session.execute(
            update(AutoscalerLease)
            .where(AutoscalerLease.id == LEASE_ID,
                   or_(AutoscalerLease.holder == holder, AutoscalerLease.expires_at < now))  # type: ignore[arg-type]
            .values(holder=holder, expires_at=now + ttl)
            .execution_options(synchronize_session=False))
        return bool(taken.rowcount)  # type: ignore[attr-defined]


def release(sessions: sessionmaker[Session], holder: str) -> None:
    """Give the lease up at shutdown so another loop need not wait for it to lapse."""
    with transaction(sessions, immediate=True) as session:
        session.execute(update(AutoscalerLease)
                        .where(AutoscalerLease.id == LEASE_ID,
                               AutoscalerLease.holder == holder)  # type: ignore[arg-type]
                        .values(expires_at=0.0).execution_options(synchronize_session=False))
