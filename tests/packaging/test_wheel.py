"""The built wheel ships hpcflow, submitters and templates and works outside the repository."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from this checkout (no build isolation: setuptools is in the venv)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        cwd=out,
    )
    [found] = out.glob("hpcflow-*.whl")
    return found


def test_wheel_holds_the_three_packages_and_their_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "hpcflow/app.py",
        "submitters/slurm.py",
        "submitters/aws.py",
        "templates/__init__.py",
        "templates/slurm/runner.sh.j2",
        "templates/aws/user_data.sh.j2",
        "hpcflow/migrations/versions/0001_initial_schema.py",
    ):
        assert path in names, f"{path} missing from {wheel.name}"
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_serves_and_renders_from_another_folder(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = Path(
        subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # Unpack the wheel as pip would; the dependencies come from this test's venv, appended
    # after the fresh site-packages so the wheel's hpcflow (not the editable checkout) wins.
    zipfile.ZipFile(wheel).extractall(purelib)
    deps = sysconfig.get_paths()["purelib"]
    (purelib / "zz_deps.pth").write_text(deps + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import hpcflow, submitters, templates, json; "
        "from submitters.base import NodeRequest; "
        "from submitters.slurm import SlurmSubmitter; "
        "req = NodeRequest(workflow_key='7', scheduler_config_id='slurm_schedulers/1', "
        "config={'account': 'acct', 'walltime': '01:00:00', 'nodes': 1}, "
        "server_url='http://h:1'); "
        "script = SlurmSubmitter(script_dir='s').render(req).text; "
        "print(json.dumps([hpcflow.__file__, templates.__file__, script]))"
    )
    where, tmpl, script = json.loads(
        subprocess.check_output([str(py), "-c", probe], cwd=elsewhere, text=True)
    )
    assert where.startswith(str(purelib)) and tmpl.startswith(str(purelib))
    assert "#SBATCH --account=acct" in script and "#SBATCH --time=01:00:00" in script

    port = _free_port()
    server = subprocess.Popen(
        [
            str(py),
            "-m",
            "hpcflow",
            "serve",
            "--dev",
            "--no-autoscale",
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{elsewhere / 'x.db'}",
        ],
        cwd=elsewhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    assert json.loads(resp.read()) == {"status": "ok"}
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    out = server.stdout.read() if server.stdout else ""
                    pytest.fail(f"server from the wheel did not answer /ping: {out}")
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (elsewhere / "x.db").exists()
