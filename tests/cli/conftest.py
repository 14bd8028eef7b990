"""Fixtures for CLI tests: a real server in a thread, and a CliRunner invoking `hpcflow`."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from hpcflow.cli.main import cli
from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer

Invoke = Callable[..., Result]


@pytest.fixture
def server(backend: Engine) -> Iterator[EmbeddedServer]:
    """A real hpcflow server on a free loopback port, in a thread, on SQLite and PostgreSQL."""
    with EmbeddedServer(backend.url.render_as_string(hide_password=False)) as srv:
        yield srv


@pytest.fixture
def api(server: EmbeddedServer) -> Client:
    """An HTTP client for the server."""
    return Client(server.url, timeout=30)


@pytest.fixture
def hpcflow(server: EmbeddedServer) -> Invoke:
    """Run `hpcflow ARGS... --url <server>`; returns click's Result."""

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, [*args, "--url", server.url], input=input)

    return invoke


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
