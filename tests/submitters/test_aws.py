"""The EC2 submitter against moto: launches, tags, user data, states, cancel, retries."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from hpcflow.errors import SubmitterError
from submitters.aws import LOG_PATH, AwsSubmitter, state_of
from submitters.base import NodeRequest, NodeState

REGION = "us-east-1"
SERVER = "srv-a"
URL = "http://10.1.2.3:8080/torc-service/v1"
CAPACITY_MESSAGE = (
    "We currently do not have sufficient t3.micro capacity in the Availability "
    "Zone you requested (us-east-1a)."
)


class Recording:
    """An EC2 client that records every call and can fail chosen calls first (moto cannot)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, list[Exception]] = {}

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(**params: Any) -> Any:
            self.calls.append((name, params))
            queue = self.failures.get(name)
            if queue:
                raise queue.pop(0)
            return method(**params)

        return call


def aws_error(code: str, message: str, operation: str = "RunInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto EC2 with fake credentials: nothing here can reach real AWS."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # we register our own: faster
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


@pytest.fixture
def ami(ec2: Any) -> str:
    made = ec2.register_image(Name="hpcflow-runner-test", RootDeviceName="/dev/xvda")
    return str(made["ImageId"])


@pytest.fixture
def rec(ec2: Any) -> Recording:
    return Recording(ec2)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_submitter(
    rec: Recording, sleeps: list[float], server: str = SERVER, **options: Any
) -> AwsSubmitter:
    return AwsSubmitter(
        region=REGION,
        client_factory=lambda region: rec,
        sleep=sleeps.append,
        server_id=server,
        **options,
    )


@pytest.fixture
def sub(rec: Recording, sleeps: list[float]) -> AwsSubmitter:
    return make_submitter(rec, sleeps)


def request(ami: str, server: str = SERVER, **config: Any) -> NodeRequest:
    doc = {
        "_id": "aws_schedulers/3",
        "_key": "3",
        "ami": ami,
        "instance_type": "t3.micro",
        "tags": {"team": "climate"},
        **config,
    }
    return NodeRequest(
        workflow_key="7",
        scheduler_config_id="aws_schedulers/3",
        config=doc,
        server_url=URL,
        server_id=server,
    )


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def describe(ec2: Any, *ids: str) -> dict[str, dict[str, Any]]:
    found = ec2.describe_instances(InstanceIds=list(ids))["Reservations"]
    return {i["InstanceId"]: i for r in found for i in r["Instances"]}


def moto_instance(iid: str) -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    return ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(iid)


def stranger(ec2: Any, ami: str, tags: dict[str, str] | None = None) -> str:
    """An instance hpcflow did not launch (no tags, or another server's tags)."""
    extra = (
        {
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ]
        }
        if tags
        else {}
    )
    made = ec2.run_instances(ImageId=ami, InstanceType="t3.nano", MinCount=1, MaxCount=1, **extra)
    return str(made["Instances"][0]["InstanceId"])


def test_registry_builds_it_and_nothing_imports_boto3() -> None:
    code = (
        "import sys, submitters\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
        "s = submitters.get_submitter('aws', region='us-east-1')\n"
        "assert type(s).__name__ == 'AwsSubmitter' and s.name == 'aws'\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'import/ctor'\n"
        "print('ok')"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_three_nodes_are_three_tagged_instances_with_the_runner_in_user_data(
    ec2: Any, ami: str, sub: AwsSubmitter
) -> None:
    req = request(ami, pip_spec="hpcflow==0.1.0", walltime="P0DT2H")
    results = [sub.submit(req) for _ in range(3)]
    ids = [r.scheduler_id for r in results]
    assert len(set(ids)) == 3
    instances = describe(ec2, *ids)
    nodes = set()
    for iid in ids:
        inst = instances[iid]
        assert inst["InstanceType"] == "t3.micro" and inst["ImageId"] == ami
        tags = tags_of(inst)
        assert tags["hpcflow:server"] == SERVER and tags["hpcflow:workflow"] == "7"
        assert tags["hpcflow:scheduler_config"] == "aws_schedulers/3"
        assert tags["team"] == "climate" and tags["Name"] == tags["hpcflow:node"]
        nodes.add(tags["hpcflow:node"])
        raw = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        text = base64.b64decode(raw["UserData"]["Value"]).decode()
        assert text.startswith("#!/bin/bash\n")
        assert (
            f"/opt/hpcflow/venv/bin/hpcflow runner 7 --url {URL} "
            "--scheduler-config-id aws_schedulers/3 --time-limit P0DT2H"
        ) in text
        assert f"export HPCFLOW_URL={URL}\n" in text
        assert "pip install --quiet hpcflow==0.1.0\n" in text
        assert "shutdown -h now" in text
    assert len(nodes) == 3, "every node has its own name"
    assert results[0].output_path == f"{ids[0]}:{LOG_PATH}"
    assert results[0].script and "hpcflow runner 7" in results[0].script
    # Instances terminate themselves when the script powers off.
    attr = ec2.describe_instance_attribute(
        InstanceId=ids[0], Attribute="instanceInitiatedShutdownBehavior"
    )
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"


def test_states_follow_the_instance_pending_running_then_canceled(
    ec2: Any, ami: str, sub: AwsSubmitter, rec: Recording
) -> None:
    iid = sub.submit(request(ami)).scheduler_id
    moto_instance(iid)._state.name = "pending"  # moto starts instances at once; EC2 boots slowly
    assert sub.status([iid]) == {iid: NodeState.PENDING}
    moto_instance(iid).start()
    assert sub.status([iid]) == {iid: NodeState.RUNNING}
    sub.cancel([iid])
    assert describe(ec2, iid)[iid]["State"]["Name"] == "terminated"
    assert sub.status([iid]) == {iid: NodeState.CANCELED}, "terminated instances stay listed"
    describes = [p for n, p in rec.calls if n == "describe_instances"]
    assert all(
        p["Filters"] == [{"Name": "tag:hpcflow:server", "Values": [SERVER]}] and p["InstanceIds"]
        for p in describes
    ), "never a describe of the whole account"


def test_an_instance_that_powered_itself_off_completed(
    ec2: Any, ami: str, sub: AwsSubmitter
) -> None:
    from moto.ec2.models.instances import StateReason

    done, spot = sub.submit(request(ami)).scheduler_id, sub.submit(request(ami)).scheduler_id
    for iid, reason in (
        (done, "Client.InstanceInitiatedShutdown"),
        (spot, "Server.SpotInstanceTermination"),
    ):
        moto_instance(iid).terminate()
        moto_instance(iid).state_reason = StateReason(f"{reason}: test", reason)
    assert sub.status([done, spot]) == {done: NodeState.COMPLETED, spot: NodeState.FAILED}


@pytest.mark.parametrize(
    ("name", "reason", "expected"),
    [
        ("pending", None, NodeState.PENDING),
        ("running", None, NodeState.RUNNING),
        ("shutting-down", "Client.InstanceInitiatedShutdown", NodeState.COMPLETED),
        ("terminated", None, NodeState.COMPLETED),
        ("stopping", None, NodeState.COMPLETED),
        ("stopped", "Client.UserInitiatedShutdown", NodeState.CANCELED),
        ("terminated", "Server.InsufficientInstanceCapacity", NodeState.FAILED),
        ("rebooting-ish", None, NodeState.UNKNOWN),
    ],
)
def test_state_table(name: str, reason: str | None, expected: NodeState) -> None:
    instance: dict[str, Any] = {"State": {"Name": name}}
    if reason:
        instance["StateReason"] = {"Code": reason}
    assert state_of(instance) is expected
    assert state_of({}) is NodeState.UNKNOWN


def test_cancel_is_idempotent_and_never_touches_other_instances(
    ec2: Any, ami: str, sub: AwsSubmitter, rec: Recording, sleeps: list[float]
) -> None:
    ours = sub.submit(request(ami)).scheduler_id
    untagged = stranger(ec2, ami)
    other = make_submitter(rec, sleeps, server="srv-b").submit(request(ami, server="srv-b"))
    theirs = other.scheduler_id
    everything = [ours, untagged, theirs]
    assert sub.status(everything) == {
        ours: NodeState.RUNNING,
        untagged: NodeState.UNKNOWN,
        theirs: NodeState.UNKNOWN,
    }
    sub.cancel(everything)
    sub.cancel(everything)  # twice is fine
    states = {i: s["State"]["Name"] for i, s in describe(ec2, *everything).items()}
    assert states == {ours: "terminated", untagged: "running", theirs: "running"}
    terminated = [p["InstanceIds"] for n, p in rec.calls if n == "terminate_instances"]
    assert terminated == [[ours]], "the second cancel found nothing alive to terminate"
    assert sub.status(everything)[untagged] is NodeState.UNKNOWN


def test_empty_lists_make_no_aws_call(ec2: Any) -> None:
    made: list[str | None] = []

    def factory(region: str | None) -> Any:
        made.append(region)
        return ec2

    sub = AwsSubmitter(region=REGION, client_factory=factory)
    assert sub.status([]) == {}
    sub.cancel([])
    assert made == [], "not even a client was created"


def test_unknown_ids_are_unknown_and_known_ids_keep_their_state(
    ec2: Any, ami: str, sub: AwsSubmitter, rec: Recording
) -> None:
    a, b = sub.submit(request(ami)).scheduler_id, sub.submit(request(ami)).scheduler_id
    sub.cancel([b])
    gone1, gone2, junk = "i-0123456789abcdef0", "i-0fedcba9876543210", "not-an-id"
    rec.calls.clear()
    found = sub.status([gone1, a, junk, gone2, b])
    assert found == {
        gone1: NodeState.UNKNOWN,
        a: NodeState.RUNNING,
        junk: NodeState.UNKNOWN,
        gone2: NodeState.UNKNOWN,
        b: NodeState.CANCELED,
    }
    asked = [p["InstanceIds"] for n, p in rec.calls if n == "describe_instances"]
    assert asked[0] == [gone1, a, gone2, b], "one call first; malformed ids are never sent"
    assert asked[-1] == [a, b], "retried without the ids AWS did not know"


def test_capacity_errors_are_retried_with_backoff_then_surfaced(
    ec2: Any, ami: str, rec: Recording, sleeps: list[float]
) -> None:
    sub = make_submitter(rec, sleeps, retries=3, backoff=2.0)
    rec.failures["run_instances"] = [
        aws_error("InsufficientInstanceCapacity", CAPACITY_MESSAGE) for _ in range(4)
    ]
    with pytest.raises(SubmitterError) as caught:
        sub.submit(request(ami))
    err = caught.value
    assert err.code == "InsufficientInstanceCapacity" and err.transient
    assert CAPACITY_MESSAGE in str(err) and "after 4 attempts" in str(err)
    assert rec.names().count("run_instances") == 4
    assert sleeps == [2.0, 4.0, 8.0]
    assert ec2.describe_instances()["Reservations"] == [], "nothing launched"

    # Two failures then capacity: launched on the third try, with one ClientToken throughout.
    rec.calls.clear()
    sleeps.clear()
    rec.failures["run_instances"] = [
        aws_error("InsufficientInstanceCapacity", CAPACITY_MESSAGE),
        aws_error("RequestLimitExceeded", "Request limit exceeded."),
    ]
    iid = sub.submit(request(ami)).scheduler_id
    runs = [p for n, p in rec.calls if n == "run_instances"]
    assert len(runs) == 3 and len({p["ClientToken"] for p in runs}) == 1
    assert sleeps == [2.0, 4.0]
    assert describe(ec2, iid)[iid]["State"]["Name"] == "running"


def test_other_client_errors_surface_at_once(ec2: Any, rec: Recording, sleeps: list[float]) -> None:
    sub = make_submitter(rec, sleeps)
    rec.failures["run_instances"] = [aws_error("UnauthorizedOperation", "You are not authorized")]
    with pytest.raises(SubmitterError) as caught:
        sub.submit(request("ami-12345678"))
    assert caught.value.code == "UnauthorizedOperation" and not caught.value.transient
    assert "You are not authorized" in str(caught.value)
    assert rec.names() == ["run_instances"] and sleeps == []
    with pytest.raises(SubmitterError, match="has no ami"):
        sub.submit(request(""))
    assert rec.names() == ["run_instances"], "a config without an AMI never reaches AWS"


def test_spot_price_and_root_volume_reach_run_instances(
    ec2: Any, ami: str, sub: AwsSubmitter, rec: Recording
) -> None:
    boto3.client("iam", region_name=REGION).create_instance_profile(
        InstanceProfileName="hpcflow-runner"
    )
    req = request(
        ami,
        spot=True,
        max_price="0.0125",
        root_volume_gb=50,
        key_name="lab",
        iam_instance_profile="hpcflow-runner",
    )
    iid = sub.submit(req).scheduler_id
    params = next(p for n, p in rec.calls if n == "run_instances")
    assert params["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
            "MaxPrice": "0.0125",
        },
    }
    root = ec2.describe_images(ImageIds=[ami])["Images"][0]["RootDeviceName"]
    assert params["BlockDeviceMappings"] == [
        {"DeviceName": root, "Ebs": {"VolumeSize": 50, "DeleteOnTermination": True}}
    ]
    assert params["IamInstanceProfile"] == {"Name": "hpcflow-runner"}
    assert params["MinCount"] == params["MaxCount"] == 1
    inst = describe(ec2, iid)[iid]
    assert inst["InstanceLifecycle"] == "spot" and inst["KeyName"] == "lab"
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])[
        "Volumes"
    ]
    assert [(v["Size"], v["Attachments"][0]["Device"]) for v in volumes] == [(50, root)]


def test_subnet_groups_and_count(ec2: Any, ami: str, sub: AwsSubmitter) -> None:
    subnet = ec2.describe_subnets()["Subnets"][0]
    group = ec2.create_security_group(
        GroupName="hpcflow", Description="runners", VpcId=subnet["VpcId"]
    )["GroupId"]
    base = request(ami, subnet_id=subnet["SubnetId"], security_group_ids=[group])
    req = NodeRequest(**{**base.__dict__, "count": 2})
    result = sub.submit(req)
    ids = [result.scheduler_id, *result.extra_ids]
    assert len(ids) == 2
    for inst in describe(ec2, *ids).values():
        assert inst["SubnetId"] == subnet["SubnetId"]
        assert [g["GroupId"] for g in inst["SecurityGroups"]] == [group]
    assert set(sub.find("7")) == set(ids)
    sub.cancel(ids)
    assert sub.find("7") == {}
    assert set(sub.find("7", include_ended=True).values()) == {NodeState.CANCELED}


def test_token_reaches_the_instance_but_not_the_stored_script(
    ec2: Any, ami: str, sub: AwsSubmitter
) -> None:
    req = NodeRequest(**{**request(ami).__dict__, "token": "s3cret-token"})
    result = sub.submit(req)
    raw = ec2.describe_instance_attribute(InstanceId=result.scheduler_id, Attribute="userData")
    assert (
        "export HPCFLOW_TOKEN=s3cret-token\n" in base64.b64decode(raw["UserData"]["Value"]).decode()
    )
    assert result.script and "s3cret-token" not in result.script
    assert "export HPCFLOW_TOKEN='<redacted>'" in result.script
