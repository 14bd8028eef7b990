"""Statements built once per dialect and reused with bind parameters.

Building a SQLAlchemy statement costs more than running it on these paths: a fresh select
costs about 225 us to build and cache-key, a prebuilt one 47 us to execute (SQLite, in
process). The hot paths (claim, complete, render) keep theirs here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import String, literal_column
from sqlalchemy.orm import Session

from hpcflow.engine.states import STATUSES

_STATEMENTS: dict[tuple[str, str], Any] = {}


def cached_statement(session: Session, name: str, build: Callable[[str], Any]) -> Any:
    """The statement `name` for the session's dialect, built by build(dialect) the first time."""
    dialect = session.get_bind().dialect.name
    stmt = _STATEMENTS.get((name, dialect))
    if stmt is None:
        stmt = _STATEMENTS[(name, dialect)] = build(dialect)
    return stmt


def status_literal(status: str) -> Any:
    """A job status written into the SQL text rather than bound.

    psycopg prepares a statement after five runs and PostgreSQL may then plan it generically;
    a generic plan cannot see that `status = $1` names a rare status, and for an EXISTS or a
    LIMIT it chose a seq scan of the jobs table (7.4 ms at 12,000 jobs). With the status in the
    text, the plan uses the column's statistics for that value.
    """
    if status not in STATUSES:  # never user text in SQL
        raise ValueError(f"unknown status {status!r}")
    return literal_column(f"'{status}'", String)


def status_in(column: Any, statuses: Iterable[str]) -> Any:
    """column IN (statuses), the statuses written into the SQL text (see status_literal)."""
    return column.in_([status_literal(s) for s in statuses])
