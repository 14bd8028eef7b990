"""Node shapes and first-fit-decreasing packing (pure functions, no database)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hpcflow.autoscale.demand import (
    GIB,
    INF,
    MIB,
    Bin,
    Group,
    Need,
    Shape,
    config_shape,
    pack,
    unfit_reason,
)


def _slurm(**fields: Any) -> Any:
    base = {
        "id": 3,
        "ntasks_per_node": None,
        "cpus_per_task": None,
        "gpus": None,
        "gres": None,
        "mem": None,
        "nodes": 1,
        "walltime": None,
    }
    return SimpleNamespace(**{**base, **fields})


def test_slurm_shapes() -> None:
    shape = config_shape(
        "slurm_schedulers",
        _slurm(
            ntasks_per_node=4,
            cpus_per_task=9,
            mem="180000",
            gres="gpu:a100:2",
            walltime="1-00:00:00",
            nodes=2,
        ),
    )
    assert shape == Shape(36, 180000 * MIB, 2, 2, 86400)
    bare = config_shape("slurm_schedulers", _slurm())
    assert bare == Shape(1, INF, 0, 1, INF)  # unset memory/walltime limit nothing
    assert config_shape("slurm_schedulers", _slurm(walltime="PT2H", mem="8g")).walltime == 7200
    with pytest.raises(ValueError, match="slurm_schedulers/3 has an invalid node shape"):
        config_shape("slurm_schedulers", _slurm(mem="lots"))


def test_local_and_aws_shapes() -> None:
    local = config_shape("local_schedulers", SimpleNamespace(id=1, num_cpus=None, memory=None))
    assert local.cpus >= 1 and 0 < local.memory < INF and local.walltime == INF
    aws = config_shape(
        "aws_schedulers",
        SimpleNamespace(id=2, num_cpus=16, memory="64g", num_gpus=1, walltime="P0DT8H"),
    )
    assert aws == Shape(16, 64 * GIB, 1, 1, 8 * 3600)


def test_unfit_reasons() -> None:
    shape = Shape(8, 256 * GIB, 0, 1, 3600)
    assert unfit_reason(Need(1, 512 * GIB, 0, 1, 60), shape, "slurm_schedulers/3") == (
        "needs 512 GB; the largest node of slurm_schedulers/3 has 256 GB"
    )
    assert "1 GPUs" in (unfit_reason(Need(1, GIB, 1, 1, 60), shape, "c") or "")
    assert "walltime of c is 3600 s" in (unfit_reason(Need(1, GIB, 0, 1, 7200), shape, "c") or "")
    assert unfit_reason(Need(8, 256 * GIB, 0, 1, 3600), shape, "c") is None


def _group(
    cpus: int,
    mem_gb: float,
    count: int,
    first: int = 1,
    cfg: str | None = None,
    targets: tuple[str, ...] = ("c",),
) -> Group:
    return Group(Need(cpus, int(mem_gb * GIB), 0, 1, 60), count, first, cfg, list(targets))


def test_pack_first_fit_decreasing() -> None:
    shapes = {"c": Shape(8, 32 * GIB, 0, 1, INF)}
    groups = [_group(1, 1, 6, 1), _group(8, 16, 2, 10), _group(4, 8, 3, 20), _group(1, 30, 1, 30)]
    opened, left = pack(groups, [], shapes, {"c": 100})
    assert opened == {"c": 5} and left == 0
    # The limit stops opening nodes; what did not fit is reported as left over.
    opened, left = pack(groups, [], shapes, {"c": 2})
    assert opened == {"c": 2} and left == 12 - 2 - 2


def test_pack_uses_existing_room_and_respects_assignment() -> None:
    shapes = {"a": Shape(4, 8 * GIB, 0, 1, INF), "b": Shape(4, 8 * GIB, 0, 1, INF)}
    runner = Bin("a", 4, 8 * GIB, 0, 1, INF, "active")
    anyone = Bin(None, 100, 100 * GIB, 0, 1, INF, "active")
    groups = [_group(2, 1, 3, cfg="b", targets=("b",)), _group(2, 1, 2, targets=("a", "b"))]
    opened, left = pack(groups, [anyone, runner], shapes, {"a": 10, "b": 10})
    # A runner of no config takes only unassigned jobs; b's jobs need nodes of b (or a b runner).
    assert opened == {"b": 2} and left == 0
    assert anyone.used == 2 and runner.used == 0
    opened, _ = pack(
        [_group(2, 1, 3, cfg="a", targets=("a",))], [anyone, runner], shapes, {"a": 10}
    )
    assert opened == {"a": 1} and runner.used == 2


def test_pack_many_identical_jobs_is_cheap() -> None:
    shapes = {"c": Shape(36, INF, 0, 1, INF)}
    opened, left = pack([_group(1, 0.5, 1_000_000)], [], shapes, {"c": 1000})
    assert opened == {"c": 1000} and left == 1_000_000 - 36_000
