"""What launched runners are told: heartbeat, idle timeout, job output, a reachable server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from hpcflow.autoscale.request import NODE_IDLE_TIMEOUT, node_request
from hpcflow.autoscale.supply import Config, ConfigRow
from hpcflow.cli.main import cli
from hpcflow.config import Settings
from tests.autoscale.helpers import FakeSubmitter, run_tick, slurm_config
from tests.engine.helpers import Api


def _config(collection: str) -> Config:
    return Config.of(
        collection,
        ConfigRow(
            {
                "id": 3,
                "workflow_id": 1,
                "rev": 1,
                "name": "c",
                "max_nodes": 1,
                "max_queued": 1,
                "is_paused": False,
                "num_cpus": 2,
                "memory": "1g",
                "walltime": None,
                "num_gpus": 0,
            }
        ),
    )


def _flags(args: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(args[::2], args[1::2], strict=True))


def test_runner_args_follow_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        heartbeat_interval_seconds=7.5,
        node_dir=str(tmp_path / "nodes"),
        public_url="http://head:9000/",
    )
    local = node_request(1, _config("local_schedulers"), {"name": "c"}, settings)
    assert local.server_url == "http://head:9000" and local.config == {"name": "c"}
    assert _flags(local.runner_args) == {
        "--heartbeat-interval": "7.5",
        "--idle-timeout": f"{NODE_IDLE_TIMEOUT:g}",
        "--output-dir": str(tmp_path / "nodes" / "local" / "jobs"),
    }
    # A workflow's own wait-for-new-jobs setting is the idle timeout; EC2 keeps its own output.
    aws = node_request(1, _config("aws_schedulers"), {}, settings, idle_timeout=300)
    assert _flags(aws.runner_args) == {"--heartbeat-interval": "7.5", "--idle-timeout": "300"}


def test_tick_passes_the_workflow_idle_timeout(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api, max_nodes=1, max_queued=1)
    api.job("a", scheduler=cfg)
    api.put("/config", {"compute_node_wait_for_new_jobs_seconds": 45})
    api.initialize()
    fake = FakeSubmitter()
    assert run_tick(app, {"slurm": fake}).launched == {cfg: 1}
    [request] = fake.requests
    assert _flags(request.runner_args)["--idle-timeout"] == "45"
    assert request.config["_id"] == cfg and request.config["account"] == "acct"


def test_serve_refuses_port_zero_with_the_autoscaler(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["serve", "--port", "0", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"]
    )
    assert result.exit_code == 2
    assert "launched runners could not reach the server" in result.output
    assert not (tmp_path / "x.db").exists()  # refused before touching anything
