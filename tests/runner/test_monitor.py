"""Resource monitor: process-tree RSS/CPU sampling, memory limits, node stats."""

from __future__ import annotations

import os
from pathlib import Path

from hpcflow.runner import processes as proc
from hpcflow.runner.monitor import Monitor, Series
from tests.runner.conftest import py
from tests.runner.test_processes import _first_line

MIB = 1024**2
# Touch every page: a zero-filled bytearray would stay virtual and never show in RSS.
HOLD_100MB = (
    "x = b'a' * (100 * 1024 * 1024); print('ready', flush=True); import time; time.sleep(60)"
)


def start(tmp_path: Path, code: str, key: str = "1") -> tuple[proc.Supervisor, proc.Run]:
    sup = proc.Supervisor(tmp_path, "1")
    env = proc.job_env(os.environ, workflow_key="1", job_key=key, run_id=0)
    run = sup.start({"_key": key, "_rev": "1", "command": py(code)}, 0, env)
    _first_line(run.stdout)
    return sup, run


def test_series() -> None:
    s = Series()
    assert s.average == 0.0
    for v in (2.0, 6.0, 4.0):
        s.add(v)
    assert (s.average, s.peak, s.low, s.count) == (4.0, 6.0, 2.0, 3)


def test_samples_rss_and_cpu_of_a_job(tmp_path: Path) -> None:
    sup, run = start(tmp_path, HOLD_100MB)
    mon = Monitor(interval=0)
    mon.add(run)
    mon.sample()
    mon.sample()
    run.stop(proc.CANCELED)
    sup.wait(30)
    mon.sample()  # the job is gone: no sample, no error
    tracked = mon.remove(run.key)
    assert tracked is not None and mon.remove(run.key) is None
    doc = Monitor.process_stats(tracked)
    assert doc is not None
    assert doc["num_samples"] == 2
    assert doc["max_rss"] >= 90 * MIB
    assert doc["avg_rss"] <= doc["max_rss"]
    assert doc["max_cpu_percent"] >= doc["avg_cpu_percent"] >= 0
    assert doc["job_key"] == "1" and doc["run_id"] == 0


def test_counts_the_children_of_a_job(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        f"c = subprocess.Popen([sys.executable, '-c', {HOLD_100MB!r}],"
        " stdout=subprocess.PIPE)\n"
        "c.stdout.readline(); print('ready', flush=True); time.sleep(60)"
    )
    sup, run = start(tmp_path, code)
    mon = Monitor(interval=0)
    mon.add(run)
    mon.sample()
    run.stop(proc.CANCELED)
    sup.wait(30)
    tracked = mon.remove(run.key)
    assert tracked is not None and tracked.rss.peak >= 100 * MIB  # parent + child


def test_memory_limit_kills_the_job(tmp_path: Path) -> None:
    sup, run = start(tmp_path, HOLD_100MB)
    killed: list[proc.Run] = []
    mon = Monitor(interval=0, on_kill=killed.append)
    mon.add(run, memory_limit=50 * MIB)
    mon.sample()
    [done] = sup.wait(30)
    assert done.stop_reason == proc.OUT_OF_MEMORY and killed == [run]
    assert proc.return_code(done.proc.returncode) == 137
    assert "exceeded the limit of 50 MiB" in done.notes[0]


def test_no_samples_no_stats_and_node_stats(tmp_path: Path) -> None:
    sup, run = start(tmp_path, "print('ready', flush=True)")
    mon = Monitor(interval=0)
    sup.wait(30)
    mon.add(run)  # already exited
    mon.sample()
    tracked = mon.remove(run.key)
    assert tracked is not None and Monitor.process_stats(tracked) is None
    doc = mon.node_stats_doc("host")
    assert doc is not None and doc["hostname"] == "host"
    cpu, memory = doc["stats"]
    assert cpu["resource_type"] == "Cpu" and memory["resource_type"] == "Memory"
    assert memory["num_samples"] == 1 and 0 < memory["maximum"] <= 100
    assert Monitor(interval=0).node_stats_doc("host") is None


def test_background_thread_samples_on_its_own(tmp_path: Path) -> None:
    sup, run = start(tmp_path, HOLD_100MB)
    mon = Monitor(interval=0.01)
    mon.add(run)
    mon.start()
    try:
        for _ in range(2000):
            if mon._jobs[run.key].rss.count >= 2:
                break
            __import__("time").sleep(0.005)
    finally:
        mon.stop()
        run.stop(proc.CANCELED)
        sup.wait(30)
    assert mon.remove(run.key).rss.count >= 2  # type: ignore[union-attr]
