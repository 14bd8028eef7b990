"""Settings: built once (from HPCFLOW_* variables and an optional TOML/YAML file) and passed in."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server and runner settings; every field can be set as HPCFLOW_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="HPCFLOW_", extra="ignore")

    database_url: str = Field(default="sqlite:///hpcflow.db", description="SQLAlchemy URL")
    host: str = "127.0.0.1"
    port: int = 8080
    url_prefix: str = Field(default="", description="Base URL path, e.g. /torc-service")
    log_level: str = "INFO"
    workers: int = 2
    # Request threads per gunicorn worker (`hpcflow serve`).
    threads: int = 4
    # Upgrade an empty or older database when the server starts.
    auto_upgrade: bool = True
    # The autoscaler loop (APScheduler) inside the server.
    autoscale_enabled: bool = False
    autoscale_interval_seconds: float = 10.0
    heartbeat_interval_seconds: float = 30.0
    lease_intervals: int = 3
    max_page_size: int = 100_000


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from a file (TOML or YAML), then the environment, then explicit overrides."""
    values: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        text = path.read_text()
        values = tomllib.loads(text) if path.suffix == ".toml" else (yaml.safe_load(text) or {})
    base = Settings()
    merged = {**values, **base.model_dump(exclude_unset=True), **overrides}
    return Settings(**{k: v for k, v in merged.items() if v is not None})
