"""The runner tests' real server fixtures, shared with the auto-tune end-to-end tests."""

from tests.runner.conftest import api, server

__all__ = ["api", "server"]
