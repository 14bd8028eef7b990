"""The EC2 user data: its text for a representative config, and what it does when run."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from submitters.aws import render_user_data
from submitters.base import NodeRequest

URL = "http://10.1.2.3:8080/torc-service/v1"


def test_user_data_text_for_a_representative_config() -> None:
    config = {
        "ami": "ami-0abc",
        "instance_type": "c7i.4xlarge",
        "spot": True,
        "max_price": "0.31",
        "root_volume_gb": 100,
        "tags": {"project": "x"},
        "user_data_extra": "mount /dev/nvme1n1 /scratch\nexport TMPDIR=/scratch\n",
        "pip_spec": "hpcflow[aws] @ git+https://example.invalid/hpcflow.git@v0.2",
        "num_cpus": 16,
        "memory": "60g",
        "num_gpus": 1,
        "walltime": "P0DT8H",
    }
    req = NodeRequest(
        workflow_key="42",
        scheduler_config_id="aws_schedulers/9",
        config=config,
        server_url=URL,
        token="tok en",
        walltime="90m",
        resources={"num_cpus": 8},
        runner_args=("--idle-timeout", "120"),
    )
    text = render_user_data(req, node_name="hpcflow-42-9-abc", token=req.token)
    lines = text.splitlines()
    expected = [
        "#!/bin/bash",
        "# hpcflow runner for workflow 42 on aws_schedulers/9 (node hpcflow-42-9-abc).",
        "LOG=/var/log/hpcflow-runner.log",
        "trap 'echo \"hpcflow: powering off at $(date -Is)\"; shutdown -h now' EXIT",
        'shutdown -h +105 "hpcflow: walltime 90m is over" || true',  # 90 min + 15 min grace
        'IMDS_TOKEN=$(curl -sS --retry 10 --retry-connrefused -X PUT "$IMDS/api/token" \\',
        'export HPCFLOW_SCHEDULER_ID="$INSTANCE_ID"',
        "export HPCFLOW_SCHEDULER_CONFIG_ID=aws_schedulers/9",
        "export HPCFLOW_SCHEDULER_TYPE=aws",
        f"export HPCFLOW_URL={URL}",
        "export HPCFLOW_TOKEN='tok en'",
        "mount /dev/nvme1n1 /scratch",
        "export TMPDIR=/scratch",
        "VENV=/opt/hpcflow/venv",
        '"$VENV/bin/python" -m pip install --quiet '
        "'hpcflow[aws] @ git+https://example.invalid/hpcflow.git@v0.2'",
        f"/opt/hpcflow/venv/bin/hpcflow runner 42 --url {URL} "
        "--scheduler-config-id aws_schedulers/9 --time-limit 90m --num-cpus 8 --memory 60g "
        "--num-gpus 1 --idle-timeout 120 || rc=$?",
        'exit "$rc"',
    ]
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions), "in this order"
    assert lines[-1] == 'exit "$rc"' and text.endswith("\n")
    assert "{{" not in text and "{%" not in text and "\n\n\n" not in text
    # Instance settings are run_instances parameters, not script text.
    assert "0.31" not in text and "project" not in text

    bare = render_user_data(
        NodeRequest(
            workflow_key="1",
            scheduler_config_id="aws_schedulers/1",
            config={"pip_spec": ""},
            server_url=URL,
        ),
        node_name="n",
        hpcflow="/usr/local/bin/hpcflow",
    )
    assert "pip install" not in bare and "HPCFLOW_TOKEN" not in bare and "shutdown -h +" not in bare
    assert (
        f"/usr/local/bin/hpcflow runner 1 --url {URL} --scheduler-config-id aws_schedulers/1 "
        "|| rc=$?"
    ) in bare.splitlines()


def _fake(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("metadata_works", [True, False])
def test_user_data_runs_the_runner_and_always_powers_off(
    tmp_path: Path, metadata_works: bool
) -> None:
    """Run the rendered script with bash, with curl, shutdown and hpcflow faked on PATH."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    _fake(
        bin_dir / "curl",
        (
            'case "$*" in *api/token*) echo imds-token ;;'
            " *instance-id*) echo i-0123456789abcdef0 ;; esac\n"
        )
        if metadata_works
        else "exit 7\n",
    )
    _fake(bin_dir / "shutdown", f'echo "$*" >> {calls}/shutdown\n')
    _fake(
        bin_dir / "hpcflow",
        f'echo "$*" > {calls}/argv\n'
        f'env | grep ^HPCFLOW_ | sort > {calls}/env\necho "runner says hi"\nexit 3\n',
    )
    req = NodeRequest(
        workflow_key="5",
        scheduler_config_id="aws_schedulers/2",
        config={"pip_spec": "", "walltime": "1h", "user_data_extra": "echo extra-ran"},
        server_url=URL,
        token="tok",
    )
    script = tmp_path / "user-data.sh"
    log = tmp_path / "log" / "runner.log"
    script.write_text(
        render_user_data(
            req, node_name="n", hpcflow=str(bin_dir / "hpcflow"), token="tok", log_path=str(log)
        )
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    shutdowns = (calls / "shutdown").read_text().splitlines()
    assert shutdowns[0] == "-h +75 hpcflow: walltime 1h is over"
    assert shutdowns[-1] == "-h now", "powered off at the end"
    text = log.read_text()
    assert "powering off" in text
    if metadata_works:
        assert "extra-ran" in text
        assert out.returncode == 3
        assert (calls / "argv").read_text().split() == [
            "runner",
            "5",
            "--url",
            URL,
            "--scheduler-config-id",
            "aws_schedulers/2",
            "--time-limit",
            "1h",
        ]
        assert (calls / "env").read_text().splitlines() == [
            "HPCFLOW_SCHEDULER_CONFIG_ID=aws_schedulers/2",
            "HPCFLOW_SCHEDULER_ID=i-0123456789abcdef0",
            "HPCFLOW_SCHEDULER_TYPE=aws",
            "HPCFLOW_TOKEN=tok",
            f"HPCFLOW_URL={URL}",
        ]
        assert "runner says hi" in text and "runner exited with 3" in text
    else:
        assert out.returncode != 0
        assert "extra-ran" not in text
        assert not (calls / "argv").exists(), "no instance id: the runner never started"
