"""`hpcflow`: the entry point; each command family lives in its own module."""

from __future__ import annotations

import importlib

import click

from hpcflow import __version__

# Module -> names of the click commands/groups it defines; a module not written yet is skipped.
COMMANDS: dict[str, tuple[str, ...]] = {
    "hpcflow.cli.server": ("serve_cmd", "db_group"),
    "hpcflow.cli.workflows": ("workflows_group",),
    "hpcflow.cli.listings": ("jobs_group", "events_group"),
    "hpcflow.cli.runner_cmd": ("runner_cmd", "run_cmd"),
    "hpcflow.cli.schedulers": ("slurm_group", "aws_group", "local_group"),
    "hpcflow.cli.nodes": ("schedule_nodes_cmd", "nodes_group"),
    "hpcflow.cli.reports": ("reports_group",),
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpcflow")
@click.option(
    "--token",
    envvar="HPCFLOW_TOKEN",
    default=None,
    help="Bearer token for the server (env HPCFLOW_TOKEN).",
)
def cli(token: str | None) -> None:
    """hpcflow: workflows of many command-line jobs on Slurm, AWS EC2 and local machines."""


def _register() -> None:
    for module_name, names in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        for name in names:
            cli.add_command(getattr(module, name))


_register()
