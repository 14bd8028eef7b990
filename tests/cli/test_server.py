"""`hpcflow serve` as a real gunicorn process tree, its settings, and `hpcflow db`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from hpcflow.cli.main import cli
from hpcflow.cli.server import serve_settings
from hpcflow.client import Client
from tests.cli.conftest import free_port
from tests.conftest import PG_URL, require_service


def lease(db: Path) -> tuple[str | None, float]:
    """(holder, expires_at) of the autoscaler lease row, read straight from the database."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT holder, expires_at FROM autoscaler_lease")).all()
    finally:
        engine.dispose()
    assert len(rows) <= 1, rows
    return (rows[0][0], rows[0][1]) if rows else (None, 0.0)


def holder_pid(holder: str | None) -> int | None:
    """The process id inside a lease holder name (host:pid:random)."""
    return int(holder.rsplit(":", 2)[1]) if holder else None


def wait_for(check: Any, timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy (readiness, not a timer we could call)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`hpcflow serve` in a subprocess: 2 gunicorn workers, autoscaler on (default), a prefix."""
    port = free_port()
    db = tmp_path / "served.db"  # fresh: serve itself must create the schema, once
    config = tmp_path / "hpcflow.toml"
    config.write_text(
        f'database_url = "sqlite:///{db}"\nurl_prefix = "/torc-service"\n'
        'workers = 5\nlog_level = "DEBUG"\n'
    )
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpcflow",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--workers",
            "2",
            "--threads",
            "2",
            "--autoscale-interval",
            "0.2",
            "--log-level",
            "info",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}/torc-service"
    try:
        yield {"proc": proc, "url": url, "db": db, "log": tmp_path / "serve.log"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_serve_gunicorn_one_autoscaler_acts_and_sigterm_is_clean(serve: dict[str, Any]) -> None:
    proc, url, db = serve["proc"], serve["url"], serve["db"]

    def ping() -> bool:
        assert proc.poll() is None, serve["log"].read_text()
        try:
            return requests.get(f"{url}/ping", timeout=5).ok
        except requests.RequestException:  # not listening yet, or a worker still booting
            return False

    started = time.monotonic()
    wait_for(ping, 30, "/ping")
    ready_s = time.monotonic() - started
    api = Client(url)
    key = api.post("/workflows", {"user": "tester", "name": "served"})["_key"]
    listed = CliRunner().invoke(cli, ["workflows", "list", "-o", "json", "--url", url])
    assert listed.exit_code == 0 and key in listed.output

    workers = wait_for(
        lambda: (
            [c.pid for c in psutil.Process(proc.pid).children()]
            if len(psutil.Process(proc.pid).children()) == 2
            else None
        ),
        10,
        "2 workers",
    )
    first = holder_pid(wait_for(lambda: lease(db)[0], 10, "a lease holder"))
    assert first in workers  # a worker's loop, not the master's
    # Both workers tick every 0.2 s; over 10+ ticks each the lease never changes hands.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        holder, expires = lease(db)
        assert holder_pid(holder) == first and expires > time.time()
        time.sleep(0.1)

    # Stop the holding worker: it hands the lease back and the other loop takes it over,
    # so that loop was running all along and only the lease kept it from acting.
    os.kill(first, signal.SIGTERM)
    second = wait_for(
        lambda: holder_pid(lease(db)[0]) not in (None, first) and holder_pid(lease(db)[0]),
        10,
        "another worker to take the lease",
    )
    assert second in [c.pid for c in psutil.Process(proc.pid).children()]
    assert api.get(f"/workflows/{key}")["name"] == "served"  # still serving

    api.http.close()  # an open keep-alive connection would hold its worker for gunicorn's linger
    children = psutil.Process(proc.pid).children()
    stop = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    stop_s = time.monotonic() - stop
    assert stop_s < 4, f"shutdown took {stop_s:.1f} s"
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert lease(db)[1] == 0.0  # the last holder released the lease on its way out
    log = serve["log"].read_text()
    # Upgraded once, by the master, before any worker started.
    assert log.count("Running upgrade  -> 0001") == 1, log  # one process ran the migrations
    assert log.index("Running upgrade") < log.index("Booting worker")
    assert "autoscaler every 0.2 s" in log and "with 2 workers x 2 threads" in log
    print(f"ready in {ready_s:.2f} s, stopped in {stop_s:.2f} s")


def test_serve_dev_server_stops_on_sigterm(tmp_path: Path, sqlite_template: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpcflow",
            "serve",
            "--dev",
            "--no-autoscale",
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{tmp_path / 'dev.db'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def ping() -> bool:
            assert proc.poll() is None
            try:
                return requests.get(f"http://127.0.0.1:{port}/ping", timeout=5).ok
            except requests.RequestException:
                return False

        wait_for(ping, 30, "/ping")
        assert psutil.Process(proc.pid).children() == []  # one process, no workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HPCFLOW_"):
            monkeypatch.delenv(name)
    toml = tmp_path / "s.toml"
    toml.write_text('port = 9000\nworkers = 3\nhost = "0.0.0.0"\n')
    s = serve_settings(toml)
    assert (s.port, s.workers, s.host, s.threads) == (9000, 3, "0.0.0.0", 4)
    assert s.autoscale_enabled is True  # on by default for serve

    monkeypatch.setenv("HPCFLOW_PORT", "9100")
    assert serve_settings(toml).port == 9100  # environment over file
    s = serve_settings(toml, port=9200, workers=None, autoscale_interval=2.5)
    assert (s.port, s.workers, s.autoscale_interval_seconds) == (9200, 3, 2.5)  # flags over all

    yml = tmp_path / "s.yaml"
    yml.write_text("autoscale_enabled: false\nurl_prefix: /torc-service\n")
    s = serve_settings(yml)
    assert s.autoscale_enabled is False and s.url_prefix == "/torc-service"
    assert serve_settings(yml, autoscale=True).autoscale_enabled is True
    monkeypatch.setenv("HPCFLOW_AUTOSCALE_ENABLED", "false")
    assert serve_settings(None).autoscale_enabled is False
    assert serve_settings(None, autoscale=True).autoscale_enabled is True

    bad = CliRunner().invoke(cli, ["serve", "--config", str(toml), "--workers", "0"])
    assert bad.exit_code == 2 and "--workers" in bad.output


def test_db_upgrade_and_current_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    url = f"sqlite:///{path}"
    runner = CliRunner()
    behind = runner.invoke(cli, ["db", "current", "--database-url", url])
    assert behind.exit_code == 1 and "revision (none)" in behind.output

    result = runner.invoke(cli, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "upgraded (empty) -> " in result.output
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"workflows", "jobs", "events", "autoscaler_lease", "alembic_version"} <= tables

    again = runner.invoke(cli, ["db", "upgrade"], env={"HPCFLOW_DATABASE_URL": url})
    assert again.exit_code == 0 and "already at" in again.output
    current = runner.invoke(cli, ["db", "current", "--database-url", url])
    assert current.exit_code == 0 and "up to date" in current.output


def test_db_upgrade_on_postgresql(tmp_path: Path) -> None:
    """A schema of our own in the test database, so the shared `public` schema is untouched."""
    schema = "cli_db_upgrade"
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        require_service(f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {exc}")
    try:
        result = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url])
        assert result.exit_code == 0, result.output
        assert "upgraded (empty) -> " in result.output and "postgresql" in result.output
        tables = set(inspect(admin).get_table_names(schema=schema))
        assert {"workflows", "jobs", "autoscaler_lease", "alembic_version"} <= tables
        current = CliRunner().invoke(cli, ["db", "current", "--database-url", url])
        assert current.exit_code == 0 and "up to date" in current.output
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


def test_db_upgrade_of_an_unreachable_database_fails_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    result = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert result.output.startswith("Error: upgrade of sqlite:///") and "failed" in result.output
