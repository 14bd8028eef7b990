"""Runner options (flags override the workflow config, which overrides defaults) and outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BUFFER_SECONDS = 60.0
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_RETRY_SECONDS = 600.0
DEFAULT_STATS_INTERVAL = 1.0


@dataclass
class RunnerOptions:
    """How one runner behaves; None means 'take it from the workflow config or the default'."""

    output_dir: Path = Path("output")
    time_limit: str | None = None
    walltime_buffer: float | None = None
    termination_grace: float = 30.0
    heartbeat_interval: float = 30.0
    status_interval: float = 5.0
    poll_interval: float = 1.0
    idle_timeout: float | None = None
    server_retry_seconds: float | None = None
    sort_method: str | None = None
    max_parallel_jobs: int | None = None
    scheduler_config_id: str | None = None
    stats_interval: float | None = None
    log_tail_bytes: int = 64 * 1024
    node_stats: bool = True
    ignore_completion: bool | None = None
    memory_limit_tolerance: float | None = None
    runtime_limit_factor: float | None = None
    trace: bool = False
    # Queue about this many seconds of work beyond the free resources once jobs prove shorter
    # than that (dispatch.py); 0 claims only what fits the free resources.
    lookahead_seconds: float = 0.1
    # Start a blocked job the moment its last blocker exits 0 here, as the server hinted
    # (follow.py), instead of a round trip later.
    follow: bool = True


@dataclass
class Settings:
    """Options resolved against the workflow config: every value concrete."""

    walltime_buffer: float
    idle_timeout: float
    retry_seconds: float
    sort_method: str
    stats_interval: float
    process_stats: bool
    ignore_completion: bool
    memory_limit_tolerance: float | None
    runtime_limit_factor: float | None


def _pick(*values: Any) -> Any:
    """The first value that is not None."""
    return next((v for v in values if v is not None), None)


def resolve(opts: RunnerOptions, config: dict[str, Any]) -> Settings:
    """Fill unset options from the workflow config (torc's compute_node_* fields)."""
    stats = config.get("compute_node_resource_stats") or {}
    healthy_minutes = config.get("compute_node_wait_for_healthy_database_minutes")
    return Settings(
        walltime_buffer=float(
            _pick(
                opts.walltime_buffer,
                config.get("compute_node_expiration_buffer_seconds"),
                DEFAULT_BUFFER_SECONDS,
            )
        ),
        idle_timeout=float(
            _pick(
                opts.idle_timeout,
                config.get("compute_node_wait_for_new_jobs_seconds"),
                DEFAULT_IDLE_TIMEOUT,
            )
        ),
        retry_seconds=float(
            _pick(
                opts.server_retry_seconds,
                None if healthy_minutes is None else healthy_minutes * 60,
                DEFAULT_RETRY_SECONDS,
            )
        ),
        sort_method=_pick(
            opts.sort_method, config.get("prepare_jobs_sort_method"), "gpus_runtime_memory"
        ),
        stats_interval=float(
            _pick(opts.stats_interval, stats.get("interval"), DEFAULT_STATS_INTERVAL)
        ),
        process_stats=bool(stats.get("process", True)),
        ignore_completion=bool(
            _pick(
                opts.ignore_completion, config.get("compute_node_ignore_workflow_completion"), False
            )
        ),
        memory_limit_tolerance=_pick(
            opts.memory_limit_tolerance, config.get("memory_limit_tolerance")
        ),
        runtime_limit_factor=_pick(opts.runtime_limit_factor, config.get("runtime_limit_factor")),
    )


@dataclass
class Outcome:
    """Why the runner stopped, and what it ran."""

    reason: str  # complete | idle | canceled | walltime | signal | server_gone
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the runner stopped for a normal reason and no job it ran failed."""
        return self.reason in ("complete", "idle") and not self.counts.get("failed")
