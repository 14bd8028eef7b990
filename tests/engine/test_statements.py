"""Prebuilt hot statements: statuses are written into the SQL text, never bound."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql

from hpcflow.engine import states
from hpcflow.engine.batch import _state_query
from hpcflow.engine.claims import _claim_update
from hpcflow.engine.statements import status_literal
from hpcflow.engine.unblock import _release_update


def sql(stmt: object) -> str:
    return str(stmt.compile(dialect=postgresql.dialect()))  # type: ignore[attr-defined]


def test_hot_statements_name_their_statuses_in_the_sql() -> None:
    # A bound status lets PostgreSQL's generic plan seq-scan the jobs table.
    assert "jobs.status = 'scheduled'" in sql(_state_query("postgresql"))
    assert "jobs.status = 'blocked'" in sql(_release_update("postgresql"))
    claim = sql(_claim_update("postgresql"))
    assert all(f"'{s}'" in claim for s in states.CLAIMABLE)


def test_status_literal_refuses_anything_but_a_status() -> None:
    with pytest.raises(ValueError, match="unknown status"):
        status_literal("ready' OR '1'='1")
