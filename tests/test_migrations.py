"""The Alembic migrations build exactly the schema the models declare (no drift either way)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import hpcflow.models  # noqa: F401  (registers every table)
from hpcflow import db


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    db.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    assert not db.needs_upgrade(engine)


def test_every_migration_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import inspect

    engine = db.make_engine(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    db.upgrade(engine)
    cfg = db.alembic_config(str(engine.url))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    with engine.connect() as conn:
        jobs = {ix["name"] for ix in inspect(conn).get_indexes("jobs")}
    assert "ix_jobs_workflow_status_priority" in jobs  # 0003's downgrade put it back
    assert db.needs_upgrade(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == ["alembic_version"]
    db.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
