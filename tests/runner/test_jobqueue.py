"""The lookahead queue: sums of what queued jobs need, first-fit takes, early stop."""

from __future__ import annotations

from typing import Any

from hpcflow.runner.jobqueue import JobQueue

GIB = 1024**3


def job(key: int, cpus: int = 1, gpus: int = 0, gib: int = 1) -> dict[str, Any]:
    return {
        "_key": str(key),
        "internal": {"num_cpus": cpus, "num_gpus": gpus, "memory_bytes": gib * GIB},
    }


def keys(taken: list[Any]) -> list[str]:
    return [j["_key"] for j in taken]


def test_sums_follow_jobs_in_and_out() -> None:
    q = JobQueue()
    q.extend([job(1), job(2, cpus=4, gpus=1, gib=8), job(3, cpus=2)])
    assert (len(q), q.cpus, q.gpus, q.memory) == (3, 7, 1, 10 * GIB)
    assert q.popleft()["_key"] == "1"
    assert (q.cpus, q.gpus, q.memory) == (6, 1, 9 * GIB)
    q.clear()
    assert (len(q), q.cpus, q.gpus, q.memory, bool(q)) == (0, 0, 0, 0, False)


def test_take_fitting_is_first_fit_in_queue_order() -> None:
    q = JobQueue()
    q.extend([job(1, cpus=4), job(2), job(3, cpus=2), job(4), job(5, gpus=1)])
    # 3 CPUs, no GPU: the 4-CPU head and the GPU job wait; 2 then 3 fit (3 CPUs used).
    assert keys(q.take_fitting(3, 0, 100 * GIB, None)) == ["2", "3"]
    assert [j["_key"] for j in q] == ["1", "4", "5"]
    assert (q.cpus, q.gpus) == (6, 1)
    # A cap on the number of parallel jobs stops the walk.
    assert keys(q.take_fitting(8, 1, 100 * GIB, 1)) == ["1"]
    assert keys(q.take_fitting(8, 1, 100 * GIB, 0)) == []
    assert keys(q.take_fitting(8, 1, 100 * GIB, None)) == ["4", "5"]
    assert (len(q), q.cpus, q.gpus, q.memory) == (0, 0, 0, 0)


def test_memory_limits_what_is_taken() -> None:
    q = JobQueue()
    q.extend([job(1, gib=6), job(2, gib=3), job(3, gib=2)])
    assert keys(q.take_fitting(8, 0, 5 * GIB, None)) == ["2", "3"]
    assert [j["_key"] for j in q] == ["1"]


def test_no_free_cpu_takes_only_jobs_that_need_none() -> None:
    q = JobQueue()
    q.extend([job(1), job(2)])
    assert q.take_fitting(0, 0, 100 * GIB, None) == []
    assert len(q) == 2
    q.extend([job(3, cpus=0)])
    assert keys(q.take_fitting(0, 0, 100 * GIB, None)) == ["3"]
    assert [j["_key"] for j in q] == ["1", "2"]


def test_the_runner_refills_its_queue_once_it_ran_half_down() -> None:
    from types import SimpleNamespace

    from hpcflow.runner.loop import Runner
    from hpcflow.runner.options import RunnerOptions
    from hpcflow.runner.resources import Offer

    runner = object.__new__(Runner)  # only the claim decision, no server
    runner.opts = RunnerOptions(lookahead_seconds=0.1)
    runner.offer = Offer(num_cpus=1, memory_bytes=8 * GIB)
    runner.used = {"cpus": 1, "gpus": 0, "memory": GIB}  # its one CPU is busy
    runner.supervisor = SimpleNamespace(running={"running": None})  # type: ignore[assignment]
    runner.mean_runtime, runner.peak_running = 0.002, 1
    runner.queue = JobQueue()
    target = runner._queue_target()
    assert target == 50  # 0.1 s of 2 ms jobs on one slot
    runner.queue.extend(job(i) for i in range(target))
    while len(runner.queue) > target // 2:
        assert not runner._has_room(), len(runner.queue)
        runner.queue.popleft()
    assert runner._has_room() and runner._lookahead() == target - len(runner.queue)
