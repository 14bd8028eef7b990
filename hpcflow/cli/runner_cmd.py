"""`hpcflow runner` (run a workflow's jobs on this node) and `hpcflow run SPEC` (one machine)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from hpcflow.client import Client
from hpcflow.runner.loop import Runner
from hpcflow.runner.options import RunnerOptions
from hpcflow.runner.resources import detect

SORTS = click.Choice(["gpus_runtime_memory", "gpus_memory_runtime", "none"])


def resource_options(fn: Any) -> Any:
    """Flags that override detected resources and the runner's behaviour."""
    for option in reversed(
        [
            click.option("--num-cpus", type=click.IntRange(min=0), help="CPUs to offer."),
            click.option("--memory", help="Memory to offer, e.g. 16g (default: detected)."),
            click.option("--num-gpus", type=click.IntRange(min=0), help="GPUs to offer."),
            click.option("--num-nodes", type=click.IntRange(min=1), help="Nodes to offer."),
            click.option(
                "--time-limit",
                help="Walltime from now: P0DT4H, 90m, 04:00:00 "
                "(default: the Slurm allocation's end, else none).",
            ),
            click.option(
                "--walltime-buffer",
                type=float,
                help="Seconds before the end to SIGTERM "
                "running jobs (default: workflow config, else 60).",
            ),
            click.option(
                "--termination-grace",
                type=float,
                default=30.0,
                show_default=True,
                help="Seconds a supports_termination job gets between SIGTERM and SIGKILL.",
            ),
            click.option(
                "--idle-timeout",
                type=float,
                help="Exit after this many seconds without "
                "jobs (default: workflow config, else 60).",
            ),
            click.option("--max-parallel-jobs", type=click.IntRange(min=1)),
            click.option(
                "--output-dir",
                type=click.Path(file_okay=False, path_type=Path),
                help="Where job stdout/stderr files go.",
            ),
            click.option("--stats-interval", type=float, help="Seconds between resource samples."),
            click.option(
                "--log-tail-bytes",
                type=click.IntRange(min=0),
                default=64 * 1024,
                show_default=True,
                help="Bytes of each stdout/stderr uploaded (0: none).",
            ),
            click.option(
                "--lookahead-seconds",
                type=click.FloatRange(min=0),
                default=0.1,
                show_default=True,
                help="Claim about this much work beyond the free "
                "resources once jobs prove shorter than that (0: only what fits now).",
            ),
            click.option(
                "--follow/--no-follow",
                default=True,
                show_default=True,
                help="Start a blocked job the moment its last blocker exits 0 on this node, "
                "as the server hinted, instead of a round trip later.",
            ),
            click.option("-v", "--verbose", is_flag=True, help="Log what the runner does."),
        ]
    ):
        fn = option(fn)
    return fn


def _options(kw: dict[str, Any]) -> RunnerOptions:
    names = RunnerOptions.__dataclass_fields__
    values = {k: v for k, v in kw.items() if k in names and v is not None}
    return RunnerOptions(**values)


def _offer(kw: dict[str, Any]) -> Any:
    return detect(
        num_cpus=kw.pop("num_cpus", None),
        memory=kw.pop("memory", None),
        num_gpus=kw.pop("num_gpus", None),
        num_nodes=kw.pop("num_nodes", None),
    )


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@click.command("runner", context_settings={"auto_envvar_prefix": "HPCFLOW_RUNNER"})
@click.argument("workflow_key")
@click.option(
    "--url",
    envvar="HPCFLOW_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Server base URL (env HPCFLOW_URL).",
)
@click.option(
    "--token",
    envvar="HPCFLOW_TOKEN",
    help="Bearer token for the server "
    "(env HPCFLOW_TOKEN; submitters pass it this way, never on the command line).",
)
@resource_options
@click.option("--heartbeat-interval", type=float, default=30.0, show_default=True)
@click.option(
    "--status-interval",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between checks for a canceled workflow.",
)
@click.option(
    "--poll-interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Longest wait between claims while no local job is running.",
)
@click.option(
    "--server-retry-seconds",
    type=float,
    help="How long to retry an unreachable server (default: workflow config, else 600).",
)
@click.option("--sort-method", type=SORTS)
@click.option("--scheduler-config-id", help="Only claim jobs for this scheduler config.")
def runner_cmd(workflow_key: str, url: str, token: str | None, verbose: bool, **kw: Any) -> None:
    """Run the jobs of WORKFLOW_KEY on this node until the workflow is done.

    Every flag can also be set as HPCFLOW_RUNNER_<FLAG> (e.g. HPCFLOW_RUNNER_IDLE_TIMEOUT=5);
    `hpcflow run` hands its flags to the runners it launches this way.
    """
    _logging(verbose)
    offer = _offer(kw)
    outcome = Runner(Client(url, token=token), workflow_key, offer, _options(kw)).run()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts.items())) or "no jobs"
    click.echo(f"runner stopped ({outcome.reason}): {outcome.message}; {counts}")
    if outcome.reason == "server_gone":
        sys.exit(2)


# Flags of `hpcflow run` that configure the workflow rather than a runner's command line.
SIZING = ("num_cpus", "memory", "idle_timeout")
# Runner settings `hpcflow run` picks unless given: it is the only user of its runners.
RUN_DEFAULTS = {"status_interval": 1.0, "server_retry_seconds": 30.0}


def runner_env(kw: dict[str, Any]) -> dict[str, str]:
    """HPCFLOW_RUNNER_* variables for the flags given (runner defaults stay the runner's)."""
    ctx = click.get_current_context()
    env = {f"HPCFLOW_RUNNER_{k.upper()}": str(v) for k, v in RUN_DEFAULTS.items()}
    for name, value in kw.items():
        if name in SIZING or value is None:
            continue
        if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT:
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        env[f"HPCFLOW_RUNNER_{name.upper()}"] = str(value)
    return env


@click.command("run")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the database, runner logs and job output "
    "(default: ./hpcflow-runs/<name>-<time>).",
)
@resource_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.25,
    show_default=True,
    help="Seconds between autoscaler ticks and progress updates.",
)
@click.option(
    "--stall-seconds",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Give up when no runner is active and nothing finishes for this long.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Larger workflows list only the jobs that did not succeed.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def run_cmd(
    spec: Path,
    run_dir: Path | None,
    interval: float,
    stall_seconds: float,
    max_rows: int,
    progress: bool,
    verbose: bool,
    **kw: Any,
) -> None:
    """Run the workflow in SPEC on this machine; exit non-zero if any job failed.

    An embedded server launches runners through its autoscaler and the local submitter
    (a local scheduler config of --num-cpus and --memory, default the whole machine, is
    added when the spec has none); the other flags go to those runners.
    """
    from hpcflow.runner.local import LocalRun, run_spec

    _logging(verbose)
    if kw.get("output_dir") is not None:
        raise click.UsageError(
            "hpcflow run keeps job output in <run-dir>/nodes/local/jobs "
            "(where its runners put it); choose the folder with --run-dir"
        )
    how = LocalRun(
        runner_env(kw),
        num_cpus=kw.get("num_cpus"),
        memory=kw.get("memory"),
        idle_timeout=kw.get("idle_timeout"),
        interval=interval,
        stall_seconds=stall_seconds,
        max_rows=max_rows,
    )
    report = run_spec(spec, run_dir=run_dir, how=how, progress=progress)
    sys.exit(report.exit_code)
