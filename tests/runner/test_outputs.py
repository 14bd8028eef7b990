"""Output files made ahead: jobs open them without creating, a job's own output is never lost."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hpcflow.runner import outputs
from hpcflow.runner.outputs import OutputFiles
from hpcflow.runner.processes import spawn


def wait_made(files: OutputFiles, paths: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p in files._made for p in paths):
        assert time.monotonic() < deadline, "files were not made ahead"
        time.sleep(0.01)


def test_files_made_ahead_are_taken_once_and_used_by_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outputs, "CHEAP", 0.0)  # keep making them, however fast the disk
    files = OutputFiles(str(tmp_path / "out"))
    out, err = str(tmp_path / "out" / "j1.o"), str(tmp_path / "out" / "j1.e")
    files.expect([out, err])
    wait_made(files, [out, err])
    assert Path(out).stat().st_size == 0
    made = (files.take(out), files.take(err))
    assert made == (True, True) and files.take(out) is False  # handed out once
    proc = spawn(
        ["sh", "-c", "echo hello; echo oops >&2"], dict(os.environ), Path(out), Path(err), made
    )
    assert proc.wait() == 0
    assert Path(out).read_text() == "hello\n" and Path(err).read_text() == "oops\n"
    files.close()
    assert Path(out).exists(), "a taken file belongs to its job"


def test_a_file_its_job_took_first_is_never_created_or_truncated(tmp_path: Path) -> None:
    files = OutputFiles(str(tmp_path))
    path = str(tmp_path / "j2.o")
    with files._lock:
        files._pending.add(path)  # expected; the thread has not reached it yet
    assert files.take(path) is False  # the job starts first and creates its own file
    Path(path).write_text("job output\n")
    files._make(path)  # the thread gets there late
    assert Path(path).read_text() == "job output\n"
    assert path not in files._made
    files.close()
    assert Path(path).read_text() == "job output\n"


def test_close_leaves_files_another_node_may_still_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outputs, "CHEAP", 0.0)
    files = OutputFiles(str(tmp_path))
    unused = str(tmp_path / "b.o")
    files.expect([unused])
    wait_made(files, [unused])
    # Another runner sharing the folder runs that job (its own open truncates and writes).
    Path(unused).write_text("run elsewhere\n")
    files.close()
    assert Path(unused).read_text() == "run elsewhere\n"
    assert files.take(unused) is False


def test_cheap_files_switch_making_ahead_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outputs, "CHEAP", 10.0)  # every create counts as cheap
    files = OutputFiles(str(tmp_path))
    paths = [str(tmp_path / f"{i}.o") for i in range(outputs.PROBE)]
    files.expect(paths)
    deadline = time.monotonic() + 10
    while files.enabled:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    later = str(tmp_path / "later.o")
    files.expect([later])
    files.close()
    assert not Path(later).exists()


def test_a_file_made_ahead_and_then_removed_is_created_by_the_job(tmp_path: Path) -> None:
    out, err = tmp_path / "gone.o", tmp_path / "gone.e"
    proc = spawn(
        ["sh", "-c", "echo still here"], dict(os.environ), str(out), str(err), (True, True)
    )
    assert proc.wait() == 0
    assert out.read_text() == "still here\n"
