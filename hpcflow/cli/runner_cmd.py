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
    for option in reversed([
        click.option("--num-cpus", type=click.IntRange(min=0), help="CPUs to offer."),
        click.option("--memory", help="Memory to offer, e.g. 16g (default: detected)."),
        click.option("--num-gpus", type=click.IntRange(min=0), help="GPUs to offer."),
        click.option("--num-nodes", type=click.IntRange(min=1), help="Nodes to offer."),
        click.option("--time-limit", help="Walltime from now: P0DT4H, 90m, 04:00:00 "
                     "(default: the Slurm allocation's end, else none)."),
        click.option("--walltime-buffer", type=float, help="Seconds before the end to SIGTERM "
                     "running jobs (default: workflow config, else 60)."),
        click.option("--termination-grace", type=float, default=30.0, show_default=True,
                     help="Seconds a supports_termination job gets between SIGTERM and SIGKILL."),
        click.option("--idle-timeout", type=float, help="Exit after this many seconds without "
                     "jobs (default: workflow config, else 60)."),
        click.option("--max-parallel-jobs", type=click.IntRange(min=1)),
        click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Where job stdout/stderr files go."),
        click.option("--stats-interval", type=float, help="Seconds between resource samples."),
        click.option("--log-tail-bytes", type=click.IntRange(min=0), default=64 * 1024,
                     show_default=True, help="Bytes of each stdout/stderr uploaded (0: none)."),
        click.option("-v", "--verbose", is_flag=True, help="Log what the runner does."),
    ]):
        fn = option(fn)
    return fn


def _options(kw: dict[str, Any]) -> RunnerOptions:
    names = RunnerOptions.__dataclass_fields__
    values = {k: v for k, v in kw.items() if k in names and v is not None}
    return RunnerOptions(**values)


def _offer(kw: dict[str, Any]) -> Any:
    return detect(num_cpus=kw.pop("num_cpus", None), memory=kw.pop("memory", None),
                  num_gpus=kw.pop("num_gpus", None), num_nodes=kw.pop("num_nodes", None))


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command("runner")
@click.argument("workflow_key")
@click.option("--url", envvar="HPCFLOW_URL", default="http://127.0.0.1:8080", show_default=True,
              help="Server base URL (env HPCFLOW_URL).")
@click.option("--token", envvar="HPCFLOW_TOKEN", help="Bearer token for the server "
              "(env HPCFLOW_TOKEN; submitters pass it this way, never on the command line).")
@resource_options
@click.option("--heartbeat-interval", type=float, default=30.0, show_default=True)
@click.option("--status-interval", type=float, default=5.0, show_default=True,
              help="Seconds between checks for a canceled workflow.")
@click.option("--poll-interval", type=float, default=1.0, show_default=True,
              help="Longest wait between claims while no local job is running.")
@click.option("--server-retry-seconds", type=float,
              help="How long to retry an unreachable server (default: workflow config, else 600).")
@click.option("--sort-method", type=SORTS)
@click.option("--scheduler-config-id", help="Only claim jobs for this scheduler config.")
def runner_cmd(workflow_key: str, url: str, token: str | None, verbose: bool, **kw: Any) -> None:
    """Run the jobs of WORKFLOW_KEY on this node until the workflow is done."""
    _logging(verbose)
    offer = _offer(kw)
    outcome = Runner(Client(url, token=token), workflow_key, offer, _options(kw)).run()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts.items())) or "no jobs"
    click.echo(f"runner stopped ({outcome.reason}): {outcome.message}; {counts}")
    if outcome.reason == "server_gone":
        sys.exit(2)


@click.command("run")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the database and job logs (default: ./hpcflow-runs/<name>-<time>).")
@resource_options
@click.option("--server", "server_mode", type=click.Choice(["process", "thread"]),
              default="process", show_default=True, help="Run the embedded server as a "
              "subprocess or in a thread of this process.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def run_cmd(spec: Path, run_dir: Path | None, server_mode: str, progress: bool, verbose: bool,
            **kw: Any) -> None:
    """Run the workflow in SPEC on this machine; exit non-zero if any job failed."""
    from hpcflow.runner.local import run_spec

    _logging(verbose)
    offer = _offer(kw)
    opts = _options(kw)
    if kw.get("idle_timeout") is None:
        opts.idle_timeout = 5.0  # nothing else will make jobs ready: do not wait for long
    report = run_spec(spec, run_dir=run_dir, options=opts, offer=offer,
                      server_mode=server_mode, progress=progress)
    sys.exit(report.exit_code)
