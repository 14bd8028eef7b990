"""The rendered sbatch script, asserted as text: #SBATCH lines present and absent, the runner
command line, the exports; custom templates; StrictUndefined and the sandbox."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import templates
from hpcflow.errors import SubmitterError
from submitters.slurm import SlurmSubmitter
from tests.submitters.conftest import slurm_request

RUNNER = f"{shlex.quote(sys.executable)} -m hpcflow runner"
ALL_FIELDS = {
    "partition": "debug",
    "qos": "high",
    "nodes": 1,
    "walltime": "04:00:00",
    "mem": "180G",
    "gres": "gpu:a100:2",
    "tmp": "100G",
    "ntasks_per_node": 1,
    "cpus_per_task": 36,
    "gpus": 2,
    "constraint": "intel&ib",
    "exclusive": True,
    "extra": "--mail-type=END --mail-user=me@site.org -x node[01-03] --requeue",
}


def sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def render(tmp_path: Path, **config: object) -> str:
    sub = SlurmSubmitter(script_dir=tmp_path)
    return sub.render(slurm_request(**config), marker="m1").text


def test_minimal_config_renders_only_what_is_set(tmp_path: Path) -> None:
    text = render(tmp_path)
    assert text.startswith("#!/bin/bash\n")
    assert sbatch_lines(text) == [
        "#SBATCH --job-name=hpcflow-wf7-c3-srv1",
        "#SBATCH --comment=hpcflow:server=srv1,workflow=7,config=slurm_schedulers.3,submission=m1",
        f"#SBATCH --output={tmp_path}/hpcflow-wf7-c3-srv1-%j.out",
        "#SBATCH --account=proj1",
        "#SBATCH --nodes=1",
    ]
    for absent in (
        "--partition",
        "--qos",
        "--time",
        "--mem",
        "--gres",
        "--tmp",
        "--exclusive",
        "--gpus",
        "--constraint",
        "--cpus-per-task",
        "--ntasks-per-node",
    ):
        assert absent not in text
    assert "export HPCFLOW_SCHEDULER_TYPE=slurm\n" in text
    assert "export HPCFLOW_SCHEDULER_CONFIG_ID=slurm_schedulers/3\n" in text
    assert 'export HPCFLOW_SCHEDULER_ID="${SLURM_JOB_ID}"\n' in text
    assert text.rstrip().endswith(
        f"exec {RUNNER} 7 --url http://login1.cluster:8080 --scheduler-config-id slurm_schedulers/3"
    )
    assert "srun" not in text


def test_every_field_becomes_its_sbatch_line(tmp_path: Path) -> None:
    lines = sbatch_lines(render(tmp_path, **ALL_FIELDS))
    assert lines[3:] == [
        "#SBATCH --account=proj1",
        "#SBATCH --partition=debug",
        "#SBATCH --qos=high",
        "#SBATCH --nodes=1",
        "#SBATCH --time=04:00:00",
        "#SBATCH --mem=180G",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=36",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --gres=gpu:a100:2",
        "#SBATCH --tmp=100G",
        "#SBATCH --constraint=intel&ib",
        "#SBATCH --exclusive",
        "#SBATCH --mail-type=END",
        "#SBATCH --mail-user=me@site.org",
        "#SBATCH -x node[01-03]",
        "#SBATCH --requeue",
    ]


def test_iso_walltime_and_request_overrides(tmp_path: Path) -> None:
    sub = SlurmSubmitter(script_dir=tmp_path)
    request = dataclasses.replace(
        slurm_request(walltime="P0DT4H", mem="8G"),
        walltime="P1DT2H30M",
        resources={"mem": "64G"},
        runner_args=("--idle-timeout", "120"),
    )
    text = sub.render(request).text
    assert "#SBATCH --time=1-02:30:00\n" in text and "04:00" not in text
    assert "#SBATCH --mem=64G\n" in text and "8G" not in text
    assert text.rstrip().endswith("--scheduler-config-id slurm_schedulers/3 --idle-timeout 120")


def test_multi_node_starts_one_runner_per_node(tmp_path: Path) -> None:
    text = render(tmp_path, nodes=4)
    assert "#SBATCH --nodes=4\n" in text
    assert (
        "srun --nodes=4 --ntasks=4 --ntasks-per-node=1 "
        '--cpus-per-task="${SLURM_CPUS_ON_NODE}" --mem=0 --kill-on-bad-exit=0 '
        f"{RUNNER} 7 --url http://login1.cluster:8080 "
        "--scheduler-config-id slurm_schedulers/3 --num-nodes 1\n"
    ) in text
    assert "exec " not in text
    # One runner for the whole allocation when asked (multi-node jobs need that).
    single = SlurmSubmitter(script_dir=tmp_path, per_node_runners=False)
    text = single.render(slurm_request(nodes=4)).text
    assert "srun" not in text and f"exec {RUNNER} 7 " in text


def test_custom_runner_command_and_token_stays_out(tmp_path: Path) -> None:
    sub = SlurmSubmitter(script_dir=tmp_path, runner_command=["/opt/hpcflow/bin/hpcflow", "runner"])
    request = dataclasses.replace(slurm_request(), token="s3cret-token")
    text = sub.render(request).text
    assert "exec /opt/hpcflow/bin/hpcflow runner 7 --url" in text
    assert "s3cret" not in text


def test_bad_values_are_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(SubmitterError, match="partition 'debug\\\\nrm -rf /'"):
        render(tmp_path, partition="debug\nrm -rf /")
    with pytest.raises(SubmitterError, match="walltime: invalid ISO 8601 duration 'soon'"):
        render(tmp_path, walltime="soon")
    with pytest.raises(SubmitterError, match="extra: No closing quotation"):
        render(tmp_path, extra="--comment='open")


def test_inline_template_from_the_config(tmp_path: Path) -> None:
    inline = (
        "#!/bin/sh\n#SBATCH -A {{ account }} -J {{ job_name }}\n"
        "{% if partition %}#SBATCH -p {{ partition }}\n{% endif %}"
        "{{ runner | quote }} # {{ config.name }}\n"
    )
    text = render(tmp_path, template=inline, name="gpu-nodes")
    assert text == (
        "#!/bin/sh\n#SBATCH -A proj1 -J hpcflow-wf7-c3-srv1\n"
        f"{RUNNER} 7 --url http://login1.cluster:8080 "
        "--scheduler-config-id slurm_schedulers/3 # gpu-nodes\n"
    )


def test_named_template_from_the_template_dir(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.sh.j2").write_text(
        "#!/bin/bash\n#SBATCH --account={{ account }}\nmodule load python\n{{ runner | quote }}\n"
    )
    sub = SlurmSubmitter(script_dir=tmp_path, template_dir=site)
    text = sub.render(slurm_request(template="site.sh.j2")).text
    assert text.splitlines()[:3] == ["#!/bin/bash", "#SBATCH --account=proj1", "module load python"]
    # The site folder also changes the default when it holds its own runner.sh.j2.
    (site / "runner.sh.j2").write_text("#!/bin/bash\necho site default\n")
    assert sub.render(slurm_request()).text == "#!/bin/bash\necho site default\n"


def test_strict_undefined_catches_a_typo(tmp_path: Path) -> None:
    with pytest.raises(SubmitterError, match="'acount' is undefined") as info:
        render(tmp_path, template="#!/bin/bash\n#SBATCH --account={{ acount }}\n")
    assert "slurm_schedulers/3: inline template failed to render" in info.value.message
    site = tmp_path / "site"
    site.mkdir()
    (site / "typo.sh.j2").write_text("#SBATCH --partition={{ partiton }}\n")
    sub = SlurmSubmitter(script_dir=tmp_path, template_dir=site)
    with pytest.raises(SubmitterError, match=r"template 'typo\.sh\.j2' failed.*'partiton'"):
        sub.render(slurm_request(template="typo.sh.j2"))


def test_config_templates_cannot_reach_the_server(tmp_path: Path) -> None:
    # Inline text is sandboxed: no walking from a string to Python's internals.
    with pytest.raises(SubmitterError, match="SecurityError"):
        render(tmp_path, template="{{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    # Names are looked up only in the template folders: no reading files off the server.
    for name in ("/etc/passwd", "../../../../etc/passwd"):
        with pytest.raises(SubmitterError, match="TemplateNotFound"):
            render(tmp_path, template=name)


def test_templates_ship_with_the_package() -> None:
    assert (templates.folder("slurm") / "runner.sh.j2").is_file()
    env = templates.environment("slurm")
    assert env.get_template("runner.sh.j2").filename == str(
        templates.ROOT / "slurm" / "runner.sh.j2"
    )


def test_rendered_script_runs_under_bash(tmp_path: Path) -> None:
    # A stand-in runner prints what it got; the script must hand over argv and environment.
    runner = tmp_path / "runner"
    runner.write_text(
        '#!/bin/sh\necho "argv: $*"\necho "id=$HPCFLOW_SCHEDULER_ID '
        'cfg=$HPCFLOW_SCHEDULER_CONFIG_ID type=$HPCFLOW_SCHEDULER_TYPE"\n'
    )
    runner.chmod(0o755)
    sub = SlurmSubmitter(script_dir=tmp_path, runner_command=[str(runner)])
    script = tmp_path / "job.sh"
    script.write_text(sub.render(slurm_request(**ALL_FIELDS)).text)
    out = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SLURM_JOB_ID": "4242"},
    )
    assert out.stdout.splitlines() == [
        "argv: 7 --url http://login1.cluster:8080 --scheduler-config-id slurm_schedulers/3",
        "id=4242 cfg=slurm_schedulers/3 type=slurm",
    ]
