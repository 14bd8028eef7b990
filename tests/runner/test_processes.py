"""Process supervision: argv without a shell, environment, output files, exits, signals."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from hpcflow.runner import processes as proc
from tests.runner.conftest import py


def job(key: str, command: str, invocation_script: str | None = None) -> dict[str, object]:
    return {"_key": key, "_rev": "1", "command": command, "invocation_script": invocation_script}


def env(key: str = "7") -> dict[str, str]:
    return proc.job_env(
        os.environ,
        workflow_key="3",
        job_key=key,
        run_id=2,
        compute_node_key="9",
        url="http://x",
        output_dir="/o",
    )


def test_argv_is_split_like_a_shell_without_one() -> None:
    assert proc.build_argv("echo 'a b' \"c d\" $HOME") == ["echo", "a b", "c d", "$HOME"]
    assert proc.build_argv("run.py -i x", "bash wrap.sh --flag") == [
        "bash",
        "wrap.sh",
        "--flag",
        "run.py",
        "-i",
        "x",
    ]
    assert proc.build_argv("run.py", "  ") == ["run.py"]
    with pytest.raises(ValueError, match="empty"):
        proc.build_argv("   ")


def test_job_env_carries_torc_and_hpcflow_identity() -> None:
    e = env()
    assert e["TORC_WORKFLOW_KEY"] == e["HPCFLOW_WORKFLOW_KEY"] == "3"
    assert e["TORC_JOB_KEY"] == e["HPCFLOW_JOB_KEY"] == "7"
    assert e["HPCFLOW_RUN_ID"] == "2"
    assert e["HPCFLOW_COMPUTE_NODE_KEY"] == "9"
    assert e["HPCFLOW_URL"] == "http://x"
    assert e["PATH"] == os.environ["PATH"]


def test_return_code_maps_signals_like_a_shell() -> None:
    assert proc.return_code(3) == 3
    assert proc.return_code(-signal.SIGTERM) == 143
    assert proc.return_code(-signal.SIGKILL) == 137


def test_runs_a_job_with_output_files_and_reports_its_exit(tmp_path: Path) -> None:
    sup = proc.Supervisor(tmp_path / "out", "3")
    code = (
        "import os, sys; print(os.environ['TORC_JOB_KEY'], sys.argv[1:]); "
        "print('oops', file=sys.stderr); sys.exit(3)"
    )
    run = sup.start(job("7", py(code) + " '$HOME' 'a b'"), 2, env())
    assert sup.running == {"7": run}
    [done] = sup.wait(30)
    assert done is run and run.proc.returncode == 3 and sup.running == {}
    assert run.stdout.read_text() == "7 ['$HOME', 'a b']\n"  # no shell expanded anything
    assert run.stderr.read_text() == "oops\n"
    assert run.stdout.name == "wf3_job7_run2.o"
    assert run.exited_mono is not None and run.exited_mono >= run.started_mono


def test_invocation_script_wraps_the_command(tmp_path: Path) -> None:
    wrapper = tmp_path / "wrap.py"
    wrapper.write_text(
        "import subprocess, sys\nprint('wrapped', flush=True)\n"
        "sys.exit(subprocess.call(sys.argv[1:]))\n"
    )
    sup = proc.Supervisor(tmp_path, "1")
    run = sup.start(job("1", py("print('inner')"), f"{sys.executable} {wrapper}"), 0, env())
    sup.wait(30)
    assert run.proc.returncode == 0
    assert run.stdout.read_text() == "wrapped\ninner\n"


def test_missing_program_raises_at_start(tmp_path: Path) -> None:
    sup = proc.Supervisor(tmp_path, "1")
    with pytest.raises(FileNotFoundError):
        sup.start(job("1", "/no/such/program --flag"), 0, env())
    assert sup.running == {}


def _script(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{text}\n")
    path.chmod(0o755)


def test_bare_names_are_found_on_the_jobs_path_and_remembered(tmp_path: Path) -> None:
    first, second, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    for folder in (first, second, out):
        folder.mkdir()
    _script(second, "tool", "echo from-b")
    path = f"{first}{os.pathsep}{second}{os.pathsep}{os.environ['PATH']}"
    sup = proc.Supervisor(out, "1")

    def run(key: str) -> str:
        started = sup.start(job(key, "tool"), 0, {**env(key), "PATH": path})
        assert started.proc.wait() == 0
        return started.stdout.read_text().strip()

    assert run("1") == "from-b"
    assert proc.executable("tool", path) == str(second / "tool")
    # A program that appears earlier on PATH later is not seen: the hit is remembered.
    _script(first, "tool", "echo from-a")
    assert run("2") == "from-b"
    # The remembered file is gone: the next start searches again instead of failing.
    (second / "tool").unlink()
    assert run("3") == "from-a"
    with pytest.raises(FileNotFoundError):
        sup.start(job("4", "no-such-tool-here"), 0, {**env("4"), "PATH": path})


def test_wait_returns_the_moment_a_process_exits(tmp_path: Path) -> None:
    sup = proc.Supervisor(tmp_path, "1")
    sup.start(job("1", py("import time; time.sleep(0.2)")), 0, env())
    began = time.perf_counter()
    [run] = sup.wait(30)
    waited = time.perf_counter() - began
    assert run.proc.returncode == 0
    assert waited < 5  # woken by the exit, not by the 30 s timeout
    assert time.perf_counter() - run.exited_mono < 1


def test_wake_interrupts_a_wait(tmp_path: Path) -> None:
    sup = proc.Supervisor(tmp_path, "1")
    sup.wake()
    began = time.perf_counter()
    assert sup.wait(30) == []
    assert time.perf_counter() - began < 5
    assert sup.wait(0) == []  # nothing queued: returns at once


def test_stop_kills_the_whole_process_tree(tmp_path: Path) -> None:
    sup = proc.Supervisor(tmp_path, "1")
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(c.pid, flush=True); time.sleep(60)"
    )
    run = sup.start(job("1", py(code)), 0, env())
    child = _first_line_int(run.stdout)
    run.stop(proc.CANCELED)
    [done] = sup.wait(30)
    assert done.stop_reason == proc.CANCELED
    assert proc.return_code(done.proc.returncode) == 137
    assert not _alive(child)


def test_sigterm_grace_then_sigkill(tmp_path: Path) -> None:
    sup = proc.Supervisor(tmp_path, "1")
    polite = sup.start(
        job(
            "1",
            py(
                "import signal, sys, time\n"
                "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
                "print('ready', flush=True)\ntime.sleep(60)"
            ),
        ),
        0,
        env("1"),
    )
    stubborn = sup.start(
        job(
            "2",
            py(
                "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "print('ready', flush=True)\ntime.sleep(60)"
            ),
        ),
        0,
        env("2"),
    )
    _first_line(polite.stdout)
    _first_line(stubborn.stdout)
    sup.stop_all(proc.TERMINATED, grace=600)
    [first] = sup.wait(30)
    assert first is polite and polite.proc.returncode == 0
    deadline = sup.kill_overdue()
    assert deadline is not None and stubborn.proc.returncode is None
    assert sup.kill_overdue(now=deadline + 1) is None  # grace over: SIGKILL
    [second] = sup.wait(30)
    assert second is stubborn and second.proc.returncode == -signal.SIGKILL
    assert second.stop_reason == proc.TERMINATED


def _first_line(path: Path) -> str:
    """Block until the process wrote its first line (it announces readiness)."""
    for _ in range(3000):
        text = path.read_text()
        if text.endswith("\n"):
            return text.splitlines()[0]
        time.sleep(0.01)
    raise AssertionError(f"{path} stayed empty")


def _first_line_int(path: Path) -> int:
    return int(_first_line(path))


def _alive(pid: int) -> bool:
    for _ in range(500):
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.01)
    return True
