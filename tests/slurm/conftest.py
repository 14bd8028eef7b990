"""The session's real one-node Slurm cluster (started once, stopped at the end)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import require_service
from tests.runner.conftest import api, server  # noqa: F401  (a threaded server on SQLite)
from tests.slurm_cluster import SlurmCluster, slurm_installed


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A started cluster (skip locally / fail under CI=true when Slurm is not installed)."""
    if not slurm_installed():
        require_service("Slurm is not installed (run scripts/slurm-setup.sh)")
    if os.geteuid() != 0:
        require_service("the test Slurm cluster runs its daemons as root (SlurmUser=root)")
    cluster = SlurmCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
