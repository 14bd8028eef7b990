"""`make demo` stays true: the demo script runs the diamond through a real server to the end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_runs_the_diamond_to_completion() -> None:
    done = subprocess.run(
        [sys.executable, "examples/demo.py"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "workflow 1 complete" in done.stdout
    # postprocess read both branches' outputs and stored their total as user data
    assert "user data summary: {'total': 286, 'count': 10}" in done.stdout
    assert (ROOT / "output" / "diamond" / "f5.json").is_file()
