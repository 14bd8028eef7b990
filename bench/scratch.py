"""Scratch databases for benchmarks: PostgreSQL ones are created when missing and emptied."""

from __future__ import annotations

from sqlalchemy import text

from hpcflow import db


def reset_postgres(url: str) -> None:
    """Create the database named by `url` if needed and drop everything in its public schema."""
    base, _, name = url.rpartition("/")
    admin = db.make_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    finally:
        engine.dispose()
