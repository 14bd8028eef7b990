"""Node shapes and first-fit-decreasing packing (pure functions, no database)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    sort_key,
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


def _first_fit_one_by_one(
    groups: list[Group], bins: list[Bin], shapes: dict[str, Shape], limits: dict[str, int]
) -> tuple[dict[str, int], int, list[int]]:
    """The definition pack() must match: every job on its own, first bin with room, else a node."""
    opened: dict[str, int] = {}
    left = 0
    for group in sorted(groups, key=sort_key):
        for _ in range(group.count):
            home = next((b for b in bins if b.accepts(group) and b.room(group.need, 1)), None)
            for target in group.targets if home is None else ():
                fresh = Bin.of(target, shapes[target])
                if limits.get(target, 0) > 0 and fresh.room(group.need, 1):
                    limits[target] -= 1
                    opened[target] = opened.get(target, 0) + 1
                    bins.append(fresh)
                    home = fresh
                    break
            if home is None:
                left += 1
            else:
                home.take(group.need, 1)
    return opened, left, [b.used for b in bins]


_CONFIGS = ("a", "b")
_needs = st.builds(
    Need,
    st.integers(0, 4),
    st.integers(0, 4).map(lambda g: g * GIB),
    st.integers(0, 1),
    st.integers(1, 2),
    st.sampled_from([60.0, 3600.0]),
)
_groups = st.lists(
    st.builds(
        Group,
        _needs,
        st.integers(1, 12),
        st.integers(0, 50),
        st.sampled_from([None, *_CONFIGS]),
        st.just([]),
    ),
    max_size=6,
)
_bins = st.lists(
    st.tuples(
        st.sampled_from([None, *_CONFIGS]),
        st.integers(-1, 6),
        st.integers(0, 6),
        st.integers(0, 1),
        st.integers(1, 2),
        st.sampled_from([30.0, 3600.0, INF]),
    ),
    max_size=5,
)
_shapes = st.fixed_dictionaries(
    {
        c: st.builds(
            Shape,
            st.integers(1, 6),
            st.sampled_from([4 * GIB, INF]),
            st.integers(0, 1),
            st.integers(1, 2),
            st.sampled_from([600.0, INF]),
        )
        for c in _CONFIGS
    }
)


@settings(max_examples=300, deadline=None)
@given(_groups, _bins, _shapes, st.integers(0, 3), st.integers(0, 3))
def test_pack_equals_first_fit_of_one_job_at_a_time(
    groups: list[Group], bins: list[tuple[Any, ...]], shapes: dict[str, Shape], la: int, lb: int
) -> None:
    for g in groups:
        g.targets = [g.config_id] if g.config_id else list(_CONFIGS)

    def fresh_bins() -> list[Bin]:
        return [Bin(cfg, c, m * GIB, g, n, w, "active") for cfg, c, m, g, n, w in bins]

    ours = fresh_bins()
    opened, left = pack(groups, ours, shapes, {"a": la, "b": lb})
    want = _first_fit_one_by_one(groups, fresh_bins(), shapes, {"a": la, "b": lb})
    assert (opened, left, [b.used for b in ours]) == want
