"""`hpcflow slurm|local|aws ...`, `hpcflow schedule-nodes` and `hpcflow nodes ...` against a
real server; schedule-nodes launches real local runners (and fake-Slurm jobs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hpcflow.cli.main import cli
from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from submitters.local import LocalSubmitter
from tests.runner.conftest import build, jobs_by_name, py
from tests.submitters.conftest import FakeSlurm, Reap, wait_for

FAST = [
    "--runner-arg=--poll-interval=0.05",
    "--runner-arg=--status-interval=0.1",
    "--runner-arg=--stats-interval=0.05",
]


def run(server: EmbeddedServer, *args: str, ok: bool = True) -> Result:
    # Wide enough that rich does not shorten the cells the tests look for.
    result = CliRunner(env={"COLUMNS": "300"}).invoke(cli, [*args, "--url", server.url])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def as_json(server: EmbeddedServer, *args: str) -> Any:
    return json.loads(run(server, *args, "-o", "json").output)


def empty_workflow(api: Client) -> str:
    return str(api.post("/workflows", {"user": "tester", "name": "cli"})["_key"])


def test_slurm_configs(server: EmbeddedServer, api: Client, tmp_path: Path) -> None:
    wf = empty_workflow(api)
    template = tmp_path / "site.sh.j2"
    template.write_text("#!/bin/bash\n{{ runner | quote }}\n")
    doc = as_json(
        server,
        "slurm",
        "add-config",
        wf,
        "--name",
        "short",
        "--account",
        "proj1",
        "--partition",
        "debug",
        "--qos",
        "high",
        "--nodes",
        "2",
        "--walltime",
        "04:00:00",
        "--mem",
        "180G",
        "--gres",
        "gpu:2",
        "--tmp",
        "100G",
        "--ntasks-per-node",
        "1",
        "--cpus-per-task",
        "36",
        "--gpus",
        "2",
        "--constraint",
        "ib",
        "--exclusive",
        "--extra",
        "--requeue",
        "--template",
        f"@{template}",
        "--max-nodes",
        "4",
        "--max-queued",
        "2",
    )
    assert {
        k: doc[k]
        for k in (
            "name",
            "account",
            "partition",
            "qos",
            "nodes",
            "walltime",
            "mem",
            "gres",
            "tmp",
            "ntasks_per_node",
            "cpus_per_task",
            "gpus",
            "constraint",
            "exclusive",
            "extra",
            "template",
            "max_nodes",
            "max_queued",
        )
    } == {
        "name": "short",
        "account": "proj1",
        "partition": "debug",
        "qos": "high",
        "nodes": 2,
        "walltime": "04:00:00",
        "mem": "180G",
        "gres": "gpu:2",
        "tmp": "100G",
        "ntasks_per_node": 1,
        "cpus_per_task": 36,
        "gpus": 2,
        "constraint": "ib",
        "exclusive": True,
        "extra": "--requeue",
        "template": template.read_text(),
        "max_nodes": 4,
        "max_queued": 2,
    }
    key = doc["_key"]
    table = run(server, "slurm", "list-configs", wf).output
    assert "short" in table and "proj1" in table and "debug" in table
    [listed] = as_json(server, "slurm", "list-configs", wf)
    assert listed["_id"] == f"slurm_schedulers/{key}"
    changed = as_json(
        server,
        "slurm",
        "modify-config",
        wf,
        key,
        "--partition",
        "long",
        "--no-exclusive",
        "--walltime",
        "1-00:00:00",
    )
    assert (changed["partition"], changed["exclusive"], changed["walltime"]) == (
        "long",
        False,
        "1-00:00:00",
    )
    # Fields not named are kept.
    assert (changed["account"], changed["mem"], changed["max_nodes"]) == ("proj1", "180G", 4)
    assert int(changed["_rev"]) == int(doc["_rev"]) + 1


def test_local_and_aws_configs(server: EmbeddedServer, api: Client) -> None:
    wf = empty_workflow(api)
    local = as_json(
        server, "local", "add-config", wf, "--name", "box", "--num-cpus", "4", "--memory", "8g"
    )
    assert (local["num_cpus"], local["memory"], local["_id"]) == (
        4,
        "8g",
        f"local_schedulers/{local['_key']}",
    )
    assert "box" in run(server, "local", "list-configs", wf).output
    local = as_json(server, "local", "modify-config", wf, local["_id"], "--num-cpus", "2")
    assert (local["num_cpus"], local["memory"]) == (2, "8g")
    aws = as_json(
        server,
        "aws",
        "add-config",
        wf,
        "--name",
        "cloud",
        "--region",
        "us-east-2",
        "--ami",
        "ami-123",
        "--instance-type",
        "c5.xlarge",
        "--subnet-id",
        "sub-1",
        "--security-group-ids",
        "sg-1",
        "--security-group-ids",
        "sg-2,sg-3",
        "--key-name",
        "me",
        "--iam-instance-profile",
        "runner",
        "--spot",
        "--max-price",
        "0.10",
        "--root-volume-gb",
        "50",
        "--tags",
        "team=hpc",
        "--tags",
        "cost=42",
        "--user-data-extra",
        "echo hi",
        "--pip-spec",
        "hpcflow==0.1.0",
        "--num-cpus",
        "4",
        "--memory",
        "8g",
        "--num-gpus",
        "0",
        "--walltime",
        "P0DT4H",
    )
    assert aws["security_group_ids"] == ["sg-1", "sg-2", "sg-3"]
    assert aws["tags"] == {"team": "hpc", "cost": "42"}
    assert (aws["spot"], aws["root_volume_gb"], aws["region"]) == (True, 50, "us-east-2")
    table = run(server, "aws", "list-configs", wf).output
    assert "cloud" in table and "c5.xlarge" in table
    aws = as_json(server, "aws", "modify-config", wf, aws["_key"], "--no-spot")
    assert aws["spot"] is False and aws["ami"] == "ami-123"


def test_config_errors(server: EmbeddedServer, api: Client) -> None:
    wf = empty_workflow(api)
    missing = run(server, "slurm", "modify-config", wf, "99", "--qos", "x", ok=False)
    assert missing.exit_code == 1
    assert f"workflow {wf} has no scheduler config slurm_schedulers/99" in missing.output
    nothing = run(server, "local", "modify-config", wf, "1", ok=False)
    assert nothing.exit_code == 1 and "nothing to change" in nothing.output
    no_account = run(server, "slurm", "add-config", wf, "--name", "x", ok=False)
    assert no_account.exit_code == 2 and "--account" in no_account.output
    bad = run(server, "local", "add-config", wf, "--num-cpus", "0", ok=False)
    assert bad.exit_code == 2
    gone = run(server, "slurm", "list-configs", "424242", ok=False)
    assert gone.exit_code == 1 and "424242" in gone.output
    assert api.get(f"/workflows/{wf}/local_schedulers")["total_count"] == 0


def test_schedule_nodes_runs_a_workflow_on_local_runners(
    server: EmbeddedServer, api: Client, tmp_path: Path, reap: Reap
) -> None:
    wf, _keys = build(api, [{"name": f"j{i}", "command": py(f"print({i})")} for i in range(10)])
    cfg = as_json(server, "local", "add-config", wf, "--num-cpus", "2", "--memory", "2g")
    launched = as_json(
        server,
        "schedule-nodes",
        wf,
        "-s",
        cfg["_id"],
        "-n",
        "2",
        "--output-dir",
        str(tmp_path / "local"),
        "--idle-timeout",
        "30",
        f"--runner-arg=--output-dir={tmp_path / 'out'}",
        *FAST,
    )
    assert len(launched) == 2
    reap(LocalSubmitter(output_dir=tmp_path / "local"), [d["scheduler_id"] for d in launched])
    assert {d["status"] for d in launched} == {"pending"}
    assert {d["scheduler_config_id"] for d in launched} == {cfg["_id"]}
    assert all(Path(d["output_path"]).parent == tmp_path / "local" for d in launched)
    assert all(f"runner {wf} --url {server.url}" in d["script"] for d in launched)
    stored = api.get(f"/workflows/{wf}/scheduled_compute_nodes")["items"]
    assert sorted(d["scheduler_id"] for d in stored) == sorted(d["scheduler_id"] for d in launched)
    wait_for(
        lambda: {j["status"] for j in jobs_by_name(api, wf).values()} == {"done"},
        what="the workflow to finish",
    )

    def listing() -> dict[str, Any]:
        return dict(as_json(server, "nodes", "list", wf, "--all"))

    # Each listing asks the OS about the nodes still open and stores what changed.
    done = wait_for(
        lambda: (
            lambda d: (
                d if {n["status"] for n in d["scheduled_compute_nodes"]} == {"completed"} else None
            )
        )(listing()),
        what="both runners to be reported completed",
    )
    assert {d["status"] for d in api.get(f"/workflows/{wf}/scheduled_compute_nodes")["items"]} == {
        "completed"
    }
    assert sorted(n["scheduler"]["scheduler_id"] for n in done["compute_nodes"]) == sorted(
        d["scheduler_id"] for d in launched
    )
    assert [c["_id"] for c in done["configs"]] == [cfg["_id"]] and done["errors"] == []
    table = run(server, "nodes", "list", wf, "--no-refresh", "--all").output
    assert "scheduled compute nodes" in table and "completed" in table
    assert all(d["scheduler_id"] in table for d in launched)


def test_schedule_nodes_on_slurm_records_the_script(
    server: EmbeddedServer,
    api: Client,
    fake_slurm: FakeSlurm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in fake_slurm.env.items():
        monkeypatch.setenv(name, value)
    wf = empty_workflow(api)
    cfg = as_json(server, "slurm", "add-config", wf, "--account", "proj1", "--partition", "p")
    [doc] = as_json(
        server,
        "schedule-nodes",
        wf,
        "-s",
        f"slurm/{cfg['_key']}",
        "--output-dir",
        str(tmp_path / "scripts"),
        "--walltime",
        "P0DT1H",
    )
    assert doc["scheduler_id"] == "1000" and "#SBATCH --time=0-01:00:00" in doc["script"]
    assert doc["output_path"].endswith("-1000.out")
    fake_slurm.set_state("1000", "RUNNING")
    listing = as_json(server, "nodes", "list", wf)
    assert [n["live_status"] for n in listing["scheduled_compute_nodes"]] == ["running"]
    [squeue] = [c for c in fake_slurm.calls("squeue")]
    assert "--jobs=1000" in squeue["args"]
    # A refusal reaches the user with Slurm's own words, and nothing is recorded.
    fake_slurm.write("sbatch.fail", "1\nsbatch: error: invalid partition specified: p\n")
    failed = run(
        server,
        "schedule-nodes",
        wf,
        "-s",
        cfg["_id"],
        "--output-dir",
        str(tmp_path / "scripts"),
        ok=False,
    )
    assert failed.exit_code == 1
    assert "launched 0 of 1 nodes" in failed.output
    assert "invalid partition specified: p" in failed.output and "exit code: 1" in failed.output
    assert api.get(f"/workflows/{wf}/scheduled_compute_nodes")["total_count"] == 1


def test_schedule_nodes_errors(server: EmbeddedServer, api: Client) -> None:
    wf = empty_workflow(api)
    unknown = run(server, "schedule-nodes", wf, "-s", "local_schedulers/77", ok=False)
    assert unknown.exit_code == 1
    assert f"workflow {wf} has no scheduler config local_schedulers/77" in unknown.output
    malformed = run(server, "schedule-nodes", wf, "-s", "77", ok=False)
    assert malformed.exit_code == 2 and "not a scheduler config id" in malformed.output
    no_wf = run(server, "schedule-nodes", "31337", "-s", "local_schedulers/1", ok=False)
    assert no_wf.exit_code == 1 and "31337" in no_wf.output
    assert api.get(f"/workflows/{wf}/scheduled_compute_nodes")["total_count"] == 0


def test_pause_and_resume(server: EmbeddedServer, api: Client) -> None:
    wf = empty_workflow(api)
    cfg = as_json(server, "slurm", "add-config", wf, "--account", "a", "--name", "main")
    said = run(server, "nodes", "pause", wf, cfg["_id"]).output
    assert f"paused {cfg['_id']}" in said
    [listed] = as_json(server, "nodes", "list", wf)["configs"]
    assert listed["is_paused"] is True
    table = run(server, "nodes", "list", wf).output
    assert "scheduler configs" in table and "True" in table
    resumed = as_json(server, "nodes", "resume", wf, cfg["_id"])
    assert resumed["is_paused"] is False and resumed["consecutive_failures"] == 0
    missing = run(server, "nodes", "pause", wf, "slurm_schedulers/99", ok=False)
    assert missing.exit_code == 1 and "99" in missing.output
