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
    # Where runners reach this server; default http://<host>:<port><prefix> (0.0.0.0 -> hostname).
    public_url: str = ""
    # Tags every allocation/instance this server launches, so clean-up finds only its own.
    server_id: str = "hpcflow"
    # Folder for sbatch scripts and runner logs of launched nodes (slurm/ and local/ inside).
    node_dir: str = "hpcflow-nodes"
    # Bearer token handed to launched runners (HPCFLOW_TOKEN); the server accepts it.
    node_token: str | None = None
    # Bearer tokens people and scripts may use (name -> token); empty with no node_token: open.
    api_tokens: dict[str, str] = Field(default_factory=dict)


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
