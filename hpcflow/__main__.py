"""`python -m hpcflow`: the same as the `hpcflow` command (used where no script is on PATH)."""

from hpcflow.cli.main import cli

if __name__ == "__main__":
    cli()
