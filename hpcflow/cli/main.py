"""`hpcflow`: the entry point; each command family lives in its own module."""

from __future__ import annotations

import importlib

import click

from hpcflow import __version__

# Command name -> (module, attribute). Modules load only when their command runs, so a node
# runner (`hpcflow runner`) starts without the server's Flask and SQLAlchemy: 31 MB and about
# 0.3 s instead of 73 MB and 1.3 s. tests/cli/test_lazy.py checks this table against the modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("hpcflow.cli.server", "serve_cmd"),
    "db": ("hpcflow.cli.server", "db_group"),
    "workflows": ("hpcflow.cli.workflows", "workflows_group"),
    "jobs": ("hpcflow.cli.listings", "jobs_group"),
    "events": ("hpcflow.cli.listings", "events_group"),
    "runner": ("hpcflow.cli.runner_cmd", "runner_cmd"),
    "run": ("hpcflow.cli.runner_cmd", "run_cmd"),
    "slurm": ("hpcflow.cli.schedulers", "slurm_group"),
    "aws": ("hpcflow.cli.schedulers", "aws_group"),
    "local": ("hpcflow.cli.schedulers", "local_group"),
    "schedule-nodes": ("hpcflow.cli.nodes", "schedule_nodes_cmd"),
    "nodes": ("hpcflow.cli.nodes", "nodes_group"),
    "reports": ("hpcflow.cli.reports", "reports_group"),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported the first time they are asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, without importing any of them."""
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module on first use."""
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module_name, attr = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module_name), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpcflow")
@click.option(
    "--token",
    envvar="HPCFLOW_TOKEN",
    default=None,
    help="Bearer token for the server (env HPCFLOW_TOKEN).",
)
def cli(token: str | None) -> None:
    """hpcflow: workflows of many command-line jobs on Slurm, AWS EC2 and local machines."""
