"""`hpcflow serve` (gunicorn, or Flask's server with --dev) and `hpcflow db upgrade|current`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from hpcflow import db
from hpcflow.config import Settings, load_settings

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False)
CONFIG = click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Settings file (TOML or YAML); flags override it and HPCFLOW_* variables.",
)
DATABASE_URL = click.option(
    "--database-url",
    help="SQLAlchemy URL (env HPCFLOW_DATABASE_URL; default sqlite:///hpcflow.db).",
)


def build_settings(config_file: Path | None, **overrides: Any) -> Settings:
    """Settings from the file, the environment and the flags; a bad value is a usage error."""
    try:
        return load_settings(config_file, **overrides)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise click.UsageError(f"invalid settings: {exc}") from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().level > logging.DEBUG:
        # Every tick and migration plugin at INFO would drown what the server says.
        for chatty in ("apscheduler", "alembic.runtime.plugins"):
            logging.getLogger(chatty).setLevel(logging.WARNING)


def upgrade_once(settings: Settings) -> str | None:
    """Bring the schema to head in this process, then drop the connections (they must not fork).

    Returns the revision now current.
    """
    engine = db.make_engine(settings.database_url)
    try:
        if db.needs_upgrade(engine):
            db.upgrade(engine)
        return current_revision(engine)[0]
    finally:
        engine.dispose()


def current_revision(engine: Any) -> tuple[str | None, str | None]:
    """(revision in the database, newest revision shipped); None when there is none."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    head = ScriptDirectory.from_config(db.alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None, head
        return MigrationContext.configure(conn).get_current_revision(), head


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_app(settings: Settings) -> Any:
    """A gunicorn application that builds one Flask app per worker, after the fork."""
    from gunicorn.app.base import BaseApplication

    class HpcflowApplication(BaseApplication):  # type: ignore[misc]
        """Embedded gunicorn: no config files, no GUNICORN_CMD_ARGS; Settings are the config."""

        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": [_bind(settings.host, settings.port)],
                "workers": settings.workers,
                "threads": settings.threads,
                "worker_class": "gthread",
                # Each worker makes its own engine and autoscaler thread: nothing may cross fork.
                "preload_app": False,
                "loglevel": settings.log_level.lower(),
                "proc_name": "hpcflow",
                "worker_exit": _worker_exit,
                # gunicorn >= 25 listens on a shared control socket by default; two servers clash.
                "control_socket_disable": True,
            }
            for name, value in options.items():
                if name in self.cfg.settings:
                    self.cfg.set(name, value)

        def load(self) -> Any:
            from hpcflow.app import serving_app

            _logging(settings.log_level)
            return serving_app(settings)

    return HpcflowApplication(prog="hpcflow serve")


def _worker_exit(_arbiter: Any, worker: Any) -> None:
    """Stop this worker's autoscaler (handing back the lease) and close its connections."""
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", None) or {}
    scaler = extensions.get("hpcflow_autoscaler")
    if scaler is not None:
        scaler.stop()
    state = extensions.get("hpcflow")
    if state is not None:
        state.engine.dispose()


def serve_settings(
    config_file: Path | None,
    autoscale: bool | None = None,
    autoscale_interval: float | None = None,
    **flags: Any,
) -> Settings:
    """Settings for `serve`: flags over HPCFLOW_* over the file; the autoscaler on unless said."""
    overrides = {k: v for k, v in flags.items() if v is not None}
    if autoscale_interval is not None:
        overrides["autoscale_interval_seconds"] = autoscale_interval
    if autoscale is not None:
        overrides["autoscale_enabled"] = autoscale
    settings = build_settings(config_file, **overrides)
    if "autoscale_enabled" not in settings.model_fields_set:
        settings = settings.model_copy(update={"autoscale_enabled": True})
    return settings


@click.command("serve")
@CONFIG
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8080).")
@click.option(
    "--workers", type=click.IntRange(min=1), help="gunicorn worker processes (default 2)."
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="Request threads per worker (default 4)."
)
@click.option("--url-prefix", help="Base URL path, e.g. /torc-service.")
@DATABASE_URL
@click.option("--log-level", type=LOG_LEVELS, help="Log level (default info).")
@click.option(
    "--autoscale/--no-autoscale",
    default=None,
    help="Run the autoscaler loop (default: on, unless the file or environment says otherwise).",
)
@click.option(
    "--autoscale-interval",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Seconds between autoscaler ticks (default 10).",
)
@click.option("--dev", is_flag=True, help="Flask's own single-process server, for development.")
def serve_cmd(config_file: Path | None, dev: bool, **flags: Any) -> None:
    """Run the hpcflow server: gunicorn workers, each with its own app and autoscaler loop."""
    settings = serve_settings(config_file, **flags)
    if settings.autoscale_enabled and not settings.port and not settings.public_url:
        # Launched runners are told host:port before the server binds: port 0 would reach nothing.
        raise click.UsageError(
            "--port 0 with the autoscaler on: launched runners could not "
            "reach the server; give a port or public_url"
        )
    _logging(settings.log_level)
    log = logging.getLogger("hpcflow.serve")
    if settings.auto_upgrade:
        revision = upgrade_once(settings)
        log.info("database at revision %s", revision)
        # Upgraded once here: the workers need not each check.
        settings = settings.model_copy(update={"auto_upgrade": False})
    if dev:
        serve_dev(settings)
        return
    log.info(
        "serving on %s with %d workers x %d threads; autoscaler %s",
        _bind(settings.host, settings.port),
        settings.workers,
        settings.threads,
        f"every {settings.autoscale_interval_seconds:g} s" if settings.autoscale_enabled else "off",
    )
    gunicorn_app(settings).run()


def serve_dev(settings: Settings) -> None:
    """Flask's own server in this process; SIGTERM exits cleanly (atexit stops the autoscaler)."""
    import signal
    import sys

    from hpcflow.app import create_app

    app = create_app(settings)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app.run(host=settings.host, port=settings.port, threaded=True, use_reloader=False)


@click.group("db")
def db_group() -> None:
    """The server's database schema (Alembic migrations)."""


@db_group.command("upgrade")
@CONFIG
@DATABASE_URL
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(config_file: Path | None, database_url: str | None, revision: str) -> None:
    """Create or migrate the database's tables to the newest (or given) revision."""
    settings = build_settings(config_file, database_url=database_url)
    engine = db.make_engine(settings.database_url)
    try:
        before, _head = current_revision(engine)
        db.upgrade(engine, revision)
        after, _head = current_revision(engine)
    except Exception as exc:
        raise click.ClickException(
            f"upgrade of {_safe(engine)} failed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"{_safe(engine)}: already at {after}")
    else:
        click.echo(f"{_safe(engine)}: upgraded {before or '(empty)'} -> {after}")


@db_group.command("current")
@CONFIG
@DATABASE_URL
def db_current(config_file: Path | None, database_url: str | None) -> None:
    """Show the database's schema revision and whether it is the newest; exit 1 when behind."""
    settings = build_settings(config_file, database_url=database_url)
    engine = db.make_engine(settings.database_url)
    try:
        current, head = current_revision(engine)
    except Exception as exc:
        raise click.ClickException(
            f"cannot read {_safe(engine)}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        engine.dispose()
    state = "up to date" if current == head else "behind; run `hpcflow db upgrade`"
    click.echo(f"{_safe(engine)}: revision {current or '(none)'} (head {head}, {state})")
    if current != head:
        raise SystemExit(1)


def _safe(engine: Any) -> str:
    """The database URL without its password."""
    return str(engine.url.render_as_string(hide_password=True))
