"""SlurmSubmitter against a fake sbatch/squeue/sacct/scancel on PATH: submit, status, cancel,
and what happens when Slurm fails, lies or forgets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hpcflow.errors import SubmitterError
from submitters import get_submitter
from submitters._slurm_states import node_state
from submitters.base import NodeState
from submitters.slurm import SlurmSubmitter
from tests.submitters.conftest import FakeSlurm, Sleeps, slurm_request

EAGAIN = "sbatch: error: Batch job submission failed: Resource temporarily unavailable\n"


def test_submit_writes_the_script_and_returns_the_job(
    slurm: SlurmSubmitter, fake_slurm: FakeSlurm, tmp_path: Path
) -> None:
    request = dataclasses.replace(slurm_request(partition="debug"), token="tok-123")
    result = slurm.submit(request)
    assert result.scheduler_id == "1000"
    assert result.output_path == str(tmp_path / "scripts" / "hpcflow-wf7-c3-srv1-1000.out")
    [call] = fake_slurm.calls("sbatch")
    assert call["args"][0] == "--parsable"
    script = Path(call["args"][1])
    assert script.parent == tmp_path / "scripts" and script.read_text() == result.script
    assert "#SBATCH --partition=debug\n" in result.script
    # Credentials travel in sbatch's environment; SLURM_CONF reaches every command.
    assert call["token"] == "tok-123" and "tok-123" not in script.read_text()
    assert call["slurm_conf"] == str(tmp_path / "slurm.conf")
    job = fake_slurm.jobs()["1000"]
    assert job["name"] == "hpcflow-wf7-c3-srv1" and "workflow=7" in job["comment"]


def test_sbatch_with_a_cluster_name(slurm: SlurmSubmitter, fake_slurm: FakeSlurm) -> None:
    fake_slurm.write("cluster", "")
    assert slurm.submit(slurm_request()).scheduler_id == "1000"


def test_sbatch_refusal_carries_what_slurm_said(
    slurm: SlurmSubmitter, fake_slurm: FakeSlurm, sleeps: Sleeps
) -> None:
    said = (
        "sbatch: error: Batch job submission failed: Invalid account or "
        "account/partition combination specified\n"
    )
    fake_slurm.write("sbatch.fail", "1\n" + said)
    with pytest.raises(SubmitterError) as info:
        slurm.submit(slurm_request())
    err = info.value
    assert err.exit_code == 1 and err.stderr == said and err.stdout == ""
    assert err.command is not None and err.command.startswith("sbatch --parsable /")
    assert "Invalid account or account/partition combination" in err.message
    assert err.transient is False
    # A refusal is final: no retry, no sleeping.
    assert len(fake_slurm.calls("sbatch")) == 1 and sleeps.seconds == []


def test_unparsable_sbatch_output_is_an_error(slurm: SlurmSubmitter, fake_slurm: FakeSlurm) -> None:
    fake_slurm.write("sbatch.stdout", "Submitted batch job (probably)\n")
    with pytest.raises(SubmitterError, match="printed no job id") as info:
        slurm.submit(slurm_request())
    assert info.value.stdout == "Submitted batch job (probably)\n"
    assert info.value.exit_code == 0


def test_burst_of_50_with_intermittent_eagain_submits_each_once(
    slurm: SlurmSubmitter, fake_slurm: FakeSlurm, sleeps: Sleeps
) -> None:
    # Calls 1, 2, 6, 7, 11, 12, ... fail: some submits need two retries.
    fake_slurm.write("sbatch.flaky", "5 1,2")
    ids = [slurm.submit(slurm_request()).scheduler_id for _ in range(50)]
    assert len(set(ids)) == 50
    jobs = fake_slurm.jobs()
    assert sorted(jobs) == sorted(ids)
    # Every script reached Slurm exactly once, however often sbatch was called for it.
    assert len({j["script"] for j in jobs.values()}) == 50
    calls = fake_slurm.calls("sbatch")
    assert len(calls) > 50 and sum(
        c["args"][1] in {j["script"] for j in jobs.values()} for c in calls
    ) == len(calls)
    assert sorted(set(sleeps.seconds)) == [1.0, 2.0]


def test_persistent_transient_error_gives_up_after_retries(
    slurm: SlurmSubmitter, fake_slurm: FakeSlurm, sleeps: Sleeps
) -> None:
    fake_slurm.write("sbatch.fail", "1\n" + EAGAIN)
    with pytest.raises(SubmitterError, match="Resource temporarily unavailable") as info:
        slurm.submit(slurm_request())
    assert info.value.transient is True
    assert len(fake_slurm.calls("sbatch")) == 6
    assert sleeps.seconds == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_lost_answer_is_looked_up_not_resubmitted(
    slurm: SlurmSubmitter, fake_slurm: FakeSlurm
) -> None:
    fake_slurm.write("sbatch.lost", "")
    result = slurm.submit(slurm_request())
    assert list(fake_slurm.jobs()) == [result.scheduler_id]
    assert len(fake_slurm.calls("sbatch")) == 1
    [lookup] = fake_slurm.calls("squeue")
    assert "--name=hpcflow-wf7-c3-srv1" in lookup["args"]


def test_sbatch_without_an_answer_is_looked_up(
    fake_slurm: FakeSlurm, sleeps: Sleeps, tmp_path: Path
) -> None:
    sub = SlurmSubmitter(script_dir=tmp_path, env=fake_slurm.env, sleep=sleeps, timeout=0.5)
    fake_slurm.write("sbatch.hang", "")
    result = sub.submit(slurm_request())
    # Killed after 0.5 s; the job it made is found by its marker and not submitted again.
    assert list(fake_slurm.jobs()) == [result.scheduler_id]
    assert len(fake_slurm.calls("sbatch")) == 1 and sleeps.seconds == []


def test_status_is_one_squeue_call(slurm: SlurmSubmitter, fake_slurm: FakeSlurm) -> None:
    ids = [slurm.submit(slurm_request()).scheduler_id for _ in range(4)]
    for job_id, state in zip(ids, ["PENDING", "RUNNING", "COMPLETED", "TIMEOUT"], strict=True):
        fake_slurm.set_state(job_id, state)
    states = slurm.status(ids)
    assert states == dict(
        zip(
            ids,
            [NodeState.PENDING, NodeState.RUNNING, NodeState.COMPLETED, NodeState.TIMEOUT],
            strict=True,
        )
    )
    [call] = fake_slurm.calls("squeue")
    assert f"--jobs={','.join(ids)}" in call["args"] and "--states=all" in call["args"]
    assert fake_slurm.calls("sacct") == []


def test_failing_squeue_makes_every_id_unknown(
    slurm: SlurmSubmitter, fake_slurm: FakeSlurm
) -> None:
    ids = [slurm.submit(slurm_request()).scheduler_id for _ in range(2)]
    fake_slurm.write(
        "squeue.fail", "1\nsqueue: error: Unable to contact slurm controller (connect failure)\n"
    )
    assert slurm.status([*ids, "junk"]) == dict.fromkeys([*ids, "junk"], NodeState.UNKNOWN)
    # Not read as 'gone', and accounting is not asked to guess either.
    assert fake_slurm.calls("sacct") == []


def test_forgotten_job_is_not_guessed(slurm: SlurmSubmitter, fake_slurm: FakeSlurm) -> None:
    kept, lost = (slurm.submit(slurm_request()).scheduler_id for _ in range(2))
    fake_slurm.set_state(kept, "RUNNING")
    fake_slurm.write("forgotten", lost)
    # No accounting: Slurm cannot tell, so neither do we.
    assert slurm.status([kept, lost]) == {kept: NodeState.RUNNING, lost: NodeState.UNKNOWN}
    [sacct] = fake_slurm.calls("sacct")
    assert f"--jobs={lost}" in sacct["args"]
    # Accounting that knows the job answers for it.
    fake_slurm.write("sacct.json", json.dumps({lost: "CANCELLED by 1000"}))
    assert slurm.status([kept, lost]) == {kept: NodeState.RUNNING, lost: NodeState.CANCELED}
    # Accounting that does not list it leaves it unknown.
    fake_slurm.write("sacct.json", json.dumps({}))
    assert slurm.status([lost]) == {lost: NodeState.UNKNOWN}


def test_lone_forgotten_id_goes_to_accounting(slurm: SlurmSubmitter, fake_slurm: FakeSlurm) -> None:
    job = slurm.submit(slurm_request()).scheduler_id
    fake_slurm.write("forgotten", job)
    fake_slurm.write("sacct.json", json.dumps({job: "OUT_OF_MEMORY"}))
    # squeue says 'Invalid job id specified' (exit 1) for a lone id it forgot.
    assert slurm.status([job]) == {job: NodeState.FAILED}
    assert slurm.status([]) == {}


def test_cancel_is_idempotent(slurm: SlurmSubmitter, fake_slurm: FakeSlurm) -> None:
    ids = [slurm.submit(slurm_request()).scheduler_id for _ in range(2)]
    slurm.cancel([*ids, "99999"])
    slurm.cancel(ids)
    assert {j["state"] for j in fake_slurm.jobs().values()} == {"CANCELLED"}
    assert slurm.status(ids) == dict.fromkeys(ids, NodeState.CANCELED)
    calls = fake_slurm.calls("scancel")
    assert [c["args"] for c in calls] == [[*ids, "99999"], ids]


def test_cancel_refused_is_an_error(slurm: SlurmSubmitter, fake_slurm: FakeSlurm) -> None:
    job = slurm.submit(slurm_request()).scheduler_id
    fake_slurm.write(
        "scancel.fail",
        f"1\nscancel: error: Kill job error on job id {job}: Access/permission denied\n",
    )
    with pytest.raises(SubmitterError, match="Access/permission denied") as info:
        slurm.cancel([job])
    assert info.value.exit_code == 1 and info.value.command == f"scancel {job}"


def test_missing_sbatch_says_so(tmp_path: Path) -> None:
    sub = SlurmSubmitter(script_dir=tmp_path, env={"PATH": str(tmp_path)})
    with pytest.raises(SubmitterError, match="sbatch not found on PATH"):
        sub.submit(slurm_request())


def test_registry_builds_without_io(tmp_path: Path) -> None:
    sub = get_submitter("slurm", script_dir=tmp_path / "never")
    assert isinstance(sub, SlurmSubmitter) and not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    ("slurm_state", "expected"),
    [
        ("PENDING", "pending"),
        ("CONFIGURING", "pending"),
        ("REQUEUED", "pending"),
        ("RUNNING", "running"),
        ("COMPLETING", "running"),
        ("SUSPENDED", "running"),
        ("COMPLETED", "completed"),
        ("FAILED", "failed"),
        ("NODE_FAIL", "failed"),
        ("BOOT_FAIL", "failed"),
        ("OUT_OF_MEMORY", "failed"),
        ("CANCELLED", "canceled"),
        ("CANCELLED by 1000", "canceled"),
        ("PREEMPTED", "canceled"),
        ("TIMEOUT", "timeout"),
        ("DEADLINE", "timeout"),
        ("CD", "completed"),
        ("PD", "pending"),
        ("WHATEVER", "unknown"),
    ],
)
def test_slurm_states_map_to_node_states(slurm_state: str, expected: str) -> None:
    assert node_state(slurm_state).value == expected
