"""Shared fixtures: an app on real SQLite and on real PostgreSQL (one parametrized fixture)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from hpcflow import db
from hpcflow.app import create_app
from hpcflow.config import Settings

PG_URL = os.environ.get("HPCFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
_pg_engine: Engine | None = None
_pg_error: str | None = None


def require_service(reason: str) -> None:
    """Skip a test whose service is missing, except under CI=true where that is a failure."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def pg_engine() -> Engine:
    """One migrated PostgreSQL engine per test session (or skip/fail with the reason)."""
    global _pg_engine, _pg_error
    if _pg_engine is None and _pg_error is None:
        try:
            engine = db.make_engine(PG_URL)
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.upgrade(engine)
            _pg_engine = engine
        except Exception as exc:  # any connection failure means "no server"
            _pg_error = f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {exc}"
    if _pg_engine is None:
        require_service(_pg_error or "PostgreSQL unavailable")
    assert _pg_engine is not None
    return _pg_engine


def truncate_all(engine: Engine) -> None:
    """Empty every hpcflow table and restart keys, keeping the schema."""
    tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file copied for each test (migrating once keeps tests fast)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[Engine]:
    """A fresh, migrated database engine for each backend."""
    if request.param == "sqlite":
        path = tmp_path / "hpcflow.db"
        shutil.copy(sqlite_template, path)
        engine = db.make_engine(f"sqlite:///{path}")
        yield engine
        engine.dispose()
    else:
        engine = pg_engine()
        truncate_all(engine)
        yield engine


@pytest.fixture
def app(backend: Engine) -> Any:
    """The Flask app on the parametrized backend."""
    settings = Settings(database_url=backend.url.render_as_string(hide_password=False))
    return create_app(settings, engine=backend)


@pytest.fixture
def client(app: Any) -> Any:
    """Flask's test client for the app."""
    return app.test_client()


@pytest.fixture
def workflow(client: Any) -> str:
    """The key of a fresh, empty workflow."""
    resp = client.post("/workflows", json={"user": "tester", "name": "wf"})
    assert resp.status_code == 200, resp.json
    return str(resp.json["_key"])


def row_counts(engine: Engine) -> dict[str, int]:
    """Row count of every table, to prove a failed request changed nothing."""
    names = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in names}
