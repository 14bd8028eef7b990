"""LocalSubmitter with real runner processes against a real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from submitters import get_submitter
from submitters.base import NodeRequest, NodeState
from submitters.local import LocalSubmitter
from tests.runner.conftest import build, jobs_by_name, py
from tests.submitters.conftest import Reap, wait_for

ENDED = {NodeState.COMPLETED, NodeState.FAILED, NodeState.CANCELED}
FAST = ("--poll-interval", "0.05", "--status-interval", "0.1", "--stats-interval", "0.05")


def local_config(api: Client, wf: str) -> dict[str, object]:
    return dict(
        api.post(
            f"/workflows/{wf}/local_schedulers",
            {"name": "here", "num_cpus": 2, "memory": "2g", "max_nodes": 2},
        )
    )


def request_for(
    server: EmbeddedServer, wf: str, cfg: dict[str, object], tmp_path: Path, *extra: str
) -> NodeRequest:
    return NodeRequest(
        workflow_key=wf,
        scheduler_config_id=str(cfg["_id"]),
        config=cfg,
        server_url=server.url,
        runner_args=(*FAST, "--output-dir", str(tmp_path / "out"), *extra),
    )


def test_two_runners_complete_a_workflow(
    server: EmbeddedServer, api: Client, tmp_path: Path, reap: Reap
) -> None:
    wf, keys = build(api, [{"name": f"j{i}", "command": py(f"print({i})")} for i in range(10)])
    cfg = local_config(api, wf)
    sub = LocalSubmitter(output_dir=tmp_path / "local")
    results = [
        sub.submit(request_for(server, wf, cfg, tmp_path, "--idle-timeout", "30")) for _ in range(2)
    ]
    ids = [r.scheduler_id for r in results]
    reap(sub, ids)
    assert sub.status(ids) == dict.fromkeys(ids, NodeState.RUNNING)
    assert results[0].script is not None and "--num-cpus 2 --memory 2g" in results[0].script
    wait_for(lambda: set(sub.status(ids).values()) <= ENDED, what="both runners to exit")
    assert sub.status(ids) == dict.fromkeys(ids, NodeState.COMPLETED)
    # A later process, which did not launch them, reads the same from the records.
    assert LocalSubmitter(output_dir=tmp_path / "local").status(ids) == dict.fromkeys(
        ids, NodeState.COMPLETED
    )
    assert {j["status"] for j in jobs_by_name(api, wf).values()} == {"done"}
    assert len(keys) == 10
    nodes = api.get(f"/workflows/{wf}/compute_nodes")["items"]
    # Each runner recorded the allocation it lives in: the server can match node to launch.
    assert sorted(n["scheduler"]["scheduler_id"] for n in nodes) == sorted(ids)
    assert {n["scheduler"]["type"] for n in nodes} == {"local"}
    assert {n["scheduler"]["scheduler_config_id"] for n in nodes} == {cfg["_id"]}
    assert {n["resources"]["num_cpus"] for n in nodes} == {2}
    assert not any(n["is_active"] for n in nodes)
    for result in results:
        assert result.output_path is not None
        assert "runner stopped (complete)" in Path(result.output_path).read_text()


def test_cancel_stops_idle_runners(
    server: EmbeddedServer, api: Client, tmp_path: Path, reap: Reap
) -> None:
    # Jobs not initialized: the workflow is not complete, so the runners wait for work.
    wf, _keys = build(api, [{"name": "later", "command": py("print(1)")}], initialize=False)
    cfg = local_config(api, wf)
    sub = get_submitter("local", output_dir=tmp_path / "local")
    ids = [
        sub.submit(request_for(server, wf, cfg, tmp_path, "--idle-timeout", "600")).scheduler_id
        for _ in range(2)
    ]
    reap(sub, ids)
    wait_for(
        lambda: len(api.get(f"/workflows/{wf}/compute_nodes", is_active="true")["items"]) == 2,
        what="both runners to register",
    )
    assert sub.status(ids) == dict.fromkeys(ids, NodeState.RUNNING)
    sub.cancel(ids)
    sub.cancel(ids)
    wait_for(lambda: set(sub.status(ids).values()) <= ENDED, what="both runners to stop")
    assert sub.status(ids) == dict.fromkeys(ids, NodeState.CANCELED)
    assert LocalSubmitter(output_dir=tmp_path / "local").status(ids) == dict.fromkeys(
        ids, NodeState.CANCELED
    )
    sub.cancel(ids)  # long gone: still fine
    # The runners stopped in order: their compute nodes say so.
    nodes = api.get(f"/workflows/{wf}/compute_nodes")["items"]
    assert len(nodes) == 2 and not any(n["is_active"] for n in nodes)


def test_exit_codes_and_kills(tmp_path: Path, reap: Reap) -> None:
    request = NodeRequest(
        workflow_key="1",
        scheduler_config_id="local_schedulers/1",
        config={},
        server_url="http://127.0.0.1:9",
    )
    failing = LocalSubmitter(
        output_dir=tmp_path,
        runner_command=[
            sys.executable,
            "-c",
            "import sys; print('args', sys.argv[1:]); sys.exit(3)",
        ],
    )
    bad = failing.submit(request).scheduler_id
    sleeper = LocalSubmitter(
        output_dir=tmp_path, runner_command=[sys.executable, "-c", "import time; time.sleep(60)"]
    )
    killed = sleeper.submit(request).scheduler_id
    reap(sleeper, [killed])
    wait_for(lambda: failing.status([bad])[bad] != NodeState.RUNNING, what="exit 3")
    assert failing.status([bad]) == {bad: NodeState.FAILED}
    record = json.loads((tmp_path / ".state" / f"{bad}.exit.json").read_text())
    assert record["exit_code"] == 3
    # SIGKILL leaves no exit record: a fresh submitter still knows it ended badly.
    os.killpg(int(killed), signal.SIGKILL)
    wait_for(lambda: sleeper.status([killed])[killed] != NodeState.RUNNING, what="the kill")
    assert LocalSubmitter(output_dir=tmp_path).status([killed]) == {killed: NodeState.FAILED}


def test_unknown_and_reused_pids(tmp_path: Path) -> None:
    sub = LocalSubmitter(output_dir=tmp_path)
    # Never launched here: not guessed.
    assert sub.status(["999999999", "i-123"]) == dict.fromkeys(
        ["999999999", "i-123"], NodeState.UNKNOWN
    )
    # A launch record for a pid now used by another process (this one): not ours, so ended.
    (tmp_path / ".state").mkdir()
    mine = os.getpid()
    (tmp_path / ".state" / f"{mine}.json").write_text(
        json.dumps({"pid": mine, "create_time": 12345.0})
    )
    assert sub.status([str(mine)]) == {str(mine): NodeState.FAILED}
    sub.cancel([str(mine), "999999999", "i-123"])  # must not signal this process
