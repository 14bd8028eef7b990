"""The one door for identity: open by default, bearer tokens when configured, runners too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.app import create_app
from hpcflow.cli.runner_cmd import runner_cmd
from hpcflow.client import Client
from hpcflow.config import Settings
from hpcflow.errors import Unauthorized
from hpcflow.identity import caller_for
from hpcflow.runner.embedded import EmbeddedServer


def test_open_server_needs_no_token(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}"))
    resp = app.test_client().get("/workflows")
    assert resp.status_code == 200


def test_tokens_required_when_configured(tmp_path: Path) -> None:
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'a.db'}",
            api_tokens={"alice": "s3cret"},
            node_token="n0de",
        )
    )
    client = app.test_client()
    assert client.get("/ping").status_code == 200  # health checks stay open
    assert client.get("/openapi.json").status_code == 200
    missing = client.post("/workflows", json={"user": "x"})
    assert missing.status_code == 401
    assert "bearer token" in missing.json["errorMessage"]
    assert missing.json["error"]["field"] == "Authorization"
    wrong = client.get("/workflows", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = client.post("/workflows", json={"user": "x"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    node = client.get("/workflows", headers={"Authorization": "Bearer n0de"})
    assert node.status_code == 200 and node.json["total_count"] == 1


def test_caller_names() -> None:
    assert caller_for(None, {}) == "anonymous"
    assert caller_for("Bearer t1", {"alice": "t1", "bob": "t2"}) == "alice"
    assert caller_for("bearer t2", {"alice": "t1", "bob": "t2"}) == "bob"
    for header in (None, "", "Bearer", "Basic t1", "Bearer t3"):
        with pytest.raises(Unauthorized):
            caller_for(header, {"alice": "t1"})


def test_runner_presents_hpcflow_token(tmp_path: Path, sqlite_template: Path) -> None:
    db = tmp_path / "server.db"
    shutil.copy(sqlite_template, db)
    with EmbeddedServer(f"sqlite:///{db}", settings={"node_token": "n0de"}) as server:
        with pytest.raises(Unauthorized):
            Client(server.url).get("/workflows")
        api = Client(server.url, token="n0de")
        wf = str(api.post("/workflows", {"user": "t", "name": "tok"})["_key"])
        api.post(f"/workflows/{wf}/bulk_jobs", {"jobs": [{"name": "a", "command": "true"}]})
        api.post(f"/workflows/{wf}/initialize_jobs")
        args = [
            wf,
            "--url",
            server.url,
            "--num-cpus",
            "1",
            "--memory",
            "1g",
            "--num-gpus",
            "0",
            "--idle-timeout",
            "2",
            "--output-dir",
            str(tmp_path / "out"),
        ]
        refused = CliRunner().invoke(runner_cmd, [*args, "--server-retry-seconds", "0.2"])
        assert refused.exit_code != 0
        result = CliRunner().invoke(runner_cmd, args, env={"HPCFLOW_TOKEN": "n0de"})
        assert result.exit_code == 0, result.output
        assert "1 done" in result.output
        assert api.get(f"/workflows/{wf}/jobs")["items"][0]["status"] == "done"


def test_cli_passes_the_root_token(tmp_path: Path, sqlite_template: Path) -> None:
    from hpcflow.cli.main import cli

    db = tmp_path / "server.db"
    shutil.copy(sqlite_template, db)
    with EmbeddedServer(f"sqlite:///{db}", settings={"api_tokens": {"ann": "t0k"}}) as server:
        Client(server.url, token="t0k").post("/workflows", {"user": "ann", "name": "mine"})
        refused = CliRunner().invoke(cli, ["workflows", "list", "--url", server.url])
        assert refused.exit_code == 1 and "bearer token" in refused.output
        by_flag = CliRunner().invoke(
            cli, ["--token", "t0k", "workflows", "list", "-o", "json", "--url", server.url]
        )
        assert by_flag.exit_code == 0, by_flag.output
        assert [w["name"] for w in json.loads(by_flag.output)] == ["mine"]
        by_env = CliRunner().invoke(
            cli, ["workflows", "list", "--url", server.url], env={"HPCFLOW_TOKEN": "t0k"}
        )
        assert by_env.exit_code == 0 and "mine" in by_env.output
