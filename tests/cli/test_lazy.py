"""The CLI imports a command's module only when that command runs."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
from click.testing import CliRunner

from hpcflow.cli.main import COMMANDS, cli


def test_every_listed_command_is_the_named_click_command() -> None:
    for name, (module_name, attr) in COMMANDS.items():
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command) and command.name == name


def test_the_runner_starts_without_the_server_stack() -> None:
    code = (
        "import sys\n"
        "from hpcflow.cli.main import cli\n"
        "try:\n"
        "    cli(['runner', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'flask') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "--time-limit" in out  # the runner's own help was printed
    assert out.strip().splitlines()[-1] == "[]"


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output
