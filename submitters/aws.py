"""AWS EC2 submitter: one instance per node, running `hpcflow runner` from its user data.

Every instance carries hpcflow tags (server, workflow, config, node); status and cancel only ever
look at instances tagged with this server, so other instances in the account are never touched.
boto3 is imported on first use, never at import or in the constructor.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hpcflow.errors import SubmitterError
from submitters._aws_user_data import LOG_PATH, USER_DATA_LIMIT, render_user_data
from submitters.base import NodeRequest, NodeState, SubmitResult, Submitter

__all__ = ["LOG_PATH", "AwsSubmitter", "render_user_data", "state_of"]

DEFAULT_SERVER = "hpcflow"
MAX_DELAY = 60.0
TAG_SERVER, TAG_WORKFLOW, TAG_CONFIG, TAG_NODE = (
    "hpcflow:server",
    "hpcflow:workflow",
    "hpcflow:scheduler_config",
    "hpcflow:node",
)
# Worth another try after a pause: capacity, limits and throttling.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InstanceLimitExceeded",
        "RequestLimitExceeded",
        "Unavailable",
        "ServiceUnavailable",
        "InternalError",
        "Throttling",
        "ThrottlingException",
    }
)
THROTTLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
        "Unavailable",
        "InternalError",
    }
)
BAD_ID_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_IDS_IN_TEXT = re.compile(r"i-[0-9a-f]{8,17}\b")
ENDED = frozenset({"shutting-down", "terminated", "stopping", "stopped"})
LIVE = ("pending", "running", "stopping", "stopped")

ClientFactory = Callable[[str | None], Any]


def _default_client(region: str | None) -> Any:
    """A boto3 EC2 client without botocore's own retries (ours have an injectable sleep)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 1})
    return boto3.session.Session().client("ec2", region_name=region, config=config)


def state_of(instance: dict[str, Any]) -> NodeState:
    """EC2 state (and why it ended) as a NodeState."""
    name = (instance.get("State") or {}).get("Name")
    if name == "pending":
        return NodeState.PENDING
    if name == "running":
        return NodeState.RUNNING
    if name in ENDED:
        reason = str((instance.get("StateReason") or {}).get("Code") or "")
        if reason == "Client.UserInitiatedShutdown":  # TerminateInstances/StopInstances
            return NodeState.CANCELED
        if reason.startswith("Server."):  # spot interruption, capacity, hardware
            return NodeState.FAILED
        return NodeState.COMPLETED  # the OS powered off: the runner finished
    return NodeState.UNKNOWN


def _error_parts(exc: Exception) -> tuple[str, str]:
    error = (getattr(exc, "response", None) or {}).get("Error") or {}
    return str(error.get("Code") or type(exc).__name__), str(error.get("Message") or exc)


class AwsSubmitter(Submitter):
    """Launches EC2 instances that run one hpcflow runner each and power off when it exits."""

    name = "aws"

    def __init__(
        self,
        *,
        region: str | None = None,
        client_factory: ClientFactory | None = None,
        retries: int = 5,
        backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        runner_command: str | None = None,
        server_id: str | None = None,
    ) -> None:
        self.region = region
        self.client_factory = client_factory or _default_client
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        # The hpcflow executable on the instance (default: the venv the user data installs).
        self.runner_command = runner_command
        self.server_id = server_id or DEFAULT_SERVER
        # Server tags this submitter answers for: its own plus any a request launched with.
        self.servers = {self.server_id}
        self._clients: dict[str | None, Any] = {}
        # Region of each instance launched here; others are looked up in the default region.
        self._regions: dict[str, str | None] = {}

    # -- plumbing ----------------------------------------------------------------------------

    def _client(self, region: str | None) -> Any:
        if region not in self._clients:
            try:
                self._clients[region] = self.client_factory(region)
            except Exception as exc:  # no region, no credentials file, bad profile
                raise SubmitterError(
                    f"cannot create an EC2 client for region {region!r}: {exc}",
                    command="boto3.client('ec2')",
                    code=type(exc).__name__,
                ) from exc
        return self._clients[region]

    def _call(self, client: Any, operation: str, retry_codes: Iterable[str], **params: Any) -> Any:
        """One EC2 call, retried with exponential backoff on the given error codes."""
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

        retry_codes = frozenset(retry_codes)
        attempt = 0
        while True:
            try:
                return getattr(client, operation)(**params)
            except (ClientError, ConnectionError, HTTPClientError) as exc:
                code, message = _error_parts(exc)
                # Network trouble is worth retrying too (run_instances carries a ClientToken).
                transient = code in retry_codes or not isinstance(exc, ClientError)
                if transient and attempt < self.retries:
                    self.sleep(min(self.backoff * 2**attempt, MAX_DELAY))
                    attempt += 1
                    continue
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise SubmitterError(
                    f"EC2 {operation} failed{tries}: {code}: {message}",
                    command=operation,
                    stderr=message,
                    code=code,
                    transient=transient,
                ) from exc
            except BotoCoreError as exc:  # no credentials, bad parameters: retrying cannot help
                code, message = _error_parts(exc)
                raise SubmitterError(
                    f"EC2 {operation} failed: {code}: {message}",
                    command=operation,
                    stderr=message,
                    code=code,
                ) from exc

    def _server_filter(self) -> dict[str, Any]:
        return {"Name": f"tag:{TAG_SERVER}", "Values": sorted(self.servers)}

    def _by_region(self, ids: Sequence[str]) -> dict[str | None, list[str]]:
        groups: dict[str | None, list[str]] = defaultdict(list)
        for iid in ids:
            groups[self._regions.get(iid, self.region)].append(iid)
        return groups

    def _describe(self, client: Any, ids: list[str]) -> list[dict[str, Any]]:
        """Our instances among `ids`; ids AWS does not know are dropped and the rest re-asked."""
        pending = list(ids)
        while pending:
            try:
                return self._pages(client, InstanceIds=pending, Filters=[self._server_filter()])
            except SubmitterError as exc:
                if exc.code not in BAD_ID_CODES:
                    raise
                bad = set(_IDS_IN_TEXT.findall(exc.stderr)) & set(pending)
                if not bad:  # cannot tell which ids are bad: all of them stay unknown
                    return []
                pending = [i for i in pending if i not in bad]
        return []

    def _pages(self, client: Any, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self._call(client, "describe_instances", THROTTLE_CODES, **params)
            found += [i for r in page.get("Reservations", []) for i in r.get("Instances", [])]
            if not page.get("NextToken"):
                return found
            params["NextToken"] = page["NextToken"]

    @staticmethod
    def _valid(ids: Sequence[str]) -> list[str]:
        return [i for i in dict.fromkeys(str(x) for x in ids) if INSTANCE_ID.match(i)]

    # -- the Submitter interface -------------------------------------------------------------

    def submit(self, request: NodeRequest) -> SubmitResult:
        """Launch request.count instances (all or none) and return their ids."""
        config = request.config
        missing = [k for k in ("ami", "instance_type") if not config.get(k)]
        if missing:
            raise SubmitterError(f"{request.scheduler_config_id} has no {' or '.join(missing)}")
        region = config.get("region") or self.region
        client = self._client(region)
        node = f"hpcflow-{request.workflow_key}-{request.config_key}-{uuid.uuid4().hex[:12]}"[-64:]
        user_data = render_user_data(
            request, node_name=node, hpcflow=self.runner_command, token=request.token
        )
        if len(user_data.encode()) > USER_DATA_LIMIT:
            raise SubmitterError(
                f"{request.scheduler_config_id}: user data is "
                f"{len(user_data.encode())} bytes; EC2 allows {USER_DATA_LIMIT}"
            )
        params = self._run_params(request, client, node, user_data)
        response = self._call(client, "run_instances", CAPACITY_CODES, **params)
        ids = [str(i["InstanceId"]) for i in response.get("Instances", [])]
        if not ids:
            raise SubmitterError("EC2 run_instances returned no instances", command="run_instances")
        self.servers.add(request.server_id)
        self._regions.update(dict.fromkeys(ids, region))
        script = user_data
        if request.token:  # the stored script must not leak the runner's credentials
            script = render_user_data(
                request, node_name=node, hpcflow=self.runner_command, token="<redacted>"
            )
        return SubmitResult(
            scheduler_id=ids[0],
            script=script,
            output_path=f"{ids[0]}:{LOG_PATH}",
            extra_ids=tuple(ids[1:]),
        )

    def _run_params(
        self, request: NodeRequest, client: Any, node: str, user_data: str
    ) -> dict[str, Any]:
        config = request.config
        tags = {
            **(config.get("tags") or {}),
            TAG_SERVER: request.server_id,
            TAG_WORKFLOW: request.workflow_key,
            TAG_CONFIG: request.scheduler_config_id,
            TAG_NODE: node,
        }
        tags.setdefault("Name", node)
        tag_list = [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]
        params: dict[str, Any] = {
            "ImageId": config["ami"],
            "InstanceType": config["instance_type"],
            "MinCount": request.count,
            "MaxCount": request.count,
            "UserData": user_data,
            "InstanceInitiatedShutdownBehavior": "terminate",
            # The same token on every retry: a timed-out call that did launch is not repeated.
            "ClientToken": node,
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
        }
        if config.get("subnet_id"):
            params["SubnetId"] = config["subnet_id"]
        if config.get("security_group_ids"):
            params["SecurityGroupIds"] = list(config["security_group_ids"])
        if config.get("key_name"):
            params["KeyName"] = config["key_name"]
        profile = config.get("iam_instance_profile")
        if profile:
            key = "Arn" if profile.startswith("arn:") else "Name"
            params["IamInstanceProfile"] = {key: profile}
        if config.get("spot"):
            spot: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if config.get("max_price"):
                spot["MaxPrice"] = str(config["max_price"])
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        if config.get("root_volume_gb"):
            params["BlockDeviceMappings"] = [
                {
                    "DeviceName": self._root_device(client, config["ami"]),
                    "Ebs": {
                        "VolumeSize": int(config["root_volume_gb"]),
                        "DeleteOnTermination": True,
                    },
                }
            ]
        return params

    def _root_device(self, client: Any, ami: str) -> str:
        images = self._call(client, "describe_images", THROTTLE_CODES, ImageIds=[ami])
        for image in images.get("Images", []):
            if image.get("RootDeviceName"):
                return str(image["RootDeviceName"])
        raise SubmitterError(f"AMI {ami} not found or has no root device", code="InvalidAMIID")

    def status(self, ids: Sequence[str]) -> dict[str, NodeState]:
        """States of our instances in one describe call (per region); others read UNKNOWN."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        found = dict.fromkeys(wanted, NodeState.UNKNOWN)
        for region, group in self._by_region(self._valid(wanted)).items():
            for instance in self._describe(self._client(region), group):
                if instance.get("InstanceId") in found:
                    found[instance["InstanceId"]] = state_of(instance)
        return found

    def cancel(self, ids: Sequence[str]) -> None:
        """Terminate those of `ids` that are ours and still alive; the rest are left alone."""
        for region, group in self._by_region(self._valid(ids)).items():
            client = self._client(region)
            live = [
                str(i["InstanceId"])
                for i in self._describe(client, group)
                if (i.get("State") or {}).get("Name") not in ("shutting-down", "terminated")
            ]
            if live:
                self._call(client, "terminate_instances", THROTTLE_CODES, InstanceIds=live)

    def find(
        self, workflow_key: str, *, region: str | None = None, include_ended: bool = False
    ) -> dict[str, NodeState]:
        """Our instances of one workflow, by tags (for clean-up); live ones unless asked."""
        filters = [
            self._server_filter(),
            {"Name": f"tag:{TAG_WORKFLOW}", "Values": [str(workflow_key)]},
        ]
        if not include_ended:
            filters.append({"Name": "instance-state-name", "Values": list(LIVE)})
        instances = self._pages(self._client(region or self.region), Filters=filters)
        return {str(i["InstanceId"]): state_of(i) for i in instances}
