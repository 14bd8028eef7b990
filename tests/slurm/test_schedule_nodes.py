"""`hpcflow schedule-nodes` and `hpcflow nodes list` as a person runs them, on the real cluster.

The server runs in a thread on 127.0.0.1 (the Slurm node is this machine); the CLI and the
runners in the allocations are real processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcflow.client import Client
from hpcflow.runner.embedded import EmbeddedServer
from hpcflow.units import parse_duration
from submitters.base import NodeState
from submitters.slurm import SlurmSubmitter
from tests.runner.conftest import build, py
from tests.slurm.e2e import hpcflow, hpcflow_json, live_ids, node_logs, statuses, wait_for
from tests.slurm.helpers import job_state
from tests.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slurm
# Runners poll fast, so the tests wait on Slurm, not on the runner's default intervals.
FAST = ("--runner-arg=--poll-interval=0.2", "--runner-arg=--status-interval=0.5")


@pytest.fixture
def cluster(slurm_cluster: SlurmCluster, server: EmbeddedServer) -> Iterator[SlurmCluster]:
    """The cluster; whatever a test launched is canceled before its server stops."""
    yield slurm_cluster
    slurm_cluster.cancel_all()


def slurm_config(api: Client, wf: str, **fields: Any) -> str:
    """A slurm_schedulers config of the workflow; returns its _id."""
    body = {
        "name": "e2e",
        "account": "hpcflow",
        "walltime": "00:05:00",
        "cpus_per_task": 2,
        "mem": "1G",
        **fields,
    }
    return str(api.post(f"/workflows/{wf}/slurm_schedulers", body)["_id"])


def schedule(
    server: EmbeddedServer,
    cluster: SlurmCluster,
    tmp_path: Path,
    wf: str,
    cfg: str,
    num: int,
    *flags: str,
) -> list[dict[str, Any]]:
    """`hpcflow schedule-nodes` with the cluster's environment; returns the recorded nodes."""
    launched = hpcflow_json(
        "schedule-nodes",
        wf,
        "-s",
        cfg,
        "-n",
        str(num),
        "--url",
        server.url,
        "--output-dir",
        str(tmp_path / "scripts"),
        *FAST,
        *flags,
        env=cluster.env,
        cwd=tmp_path,
    )
    assert len(launched) == num
    return list(launched)


def test_schedule_nodes_runs_a_workflow_in_two_allocations(
    server: EmbeddedServer, api: Client, cluster: SlurmCluster, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    code = (
        f"import os, sys; open(os.path.join({str(marks)!r}, sys.argv[1]), 'w')"
        ".write(os.environ['SLURM_JOB_ID'])"
    )
    wf, _keys = build(api, [{"name": f"j{i}", "command": f"{py(code)} j{i}"} for i in range(20)])
    cfg = slurm_config(api, wf)
    launched = schedule(server, cluster, tmp_path, wf, cfg, 2)
    ids = {str(d["scheduler_id"]) for d in launched}
    assert len(ids) == 2 and all(d["scheduler_config_id"] == cfg for d in launched)

    def explain() -> str:
        return f"{statuses(api, wf)}\n{node_logs(tmp_path / 'scripts')}"

    wait_for("all 20 jobs done", lambda: set(statuses(api, wf).values()) == {"done"}, 60, explain)
    # Every job ran inside one of the two allocations, each of which ran a real runner.
    ran_in = {p.name: p.read_text() for p in marks.iterdir()}
    assert set(ran_in) == {f"j{i}" for i in range(20)} and set(ran_in.values()) <= ids
    runners = list(api.iter_items(f"/workflows/{wf}/compute_nodes"))
    assert {str(r["scheduler"]["job_id"]) for r in runners} == ids, explain()
    assert {
        r["job_key"]: r["return_code"] for r in api.iter_items(f"/workflows/{wf}/results")
    }.keys() == set(_keys.values())
    # The runners see the workflow complete and exit: the allocations leave the queue.
    wait_for("both allocations to leave squeue", lambda: not ids & live_ids(cluster), 30, explain)
    assert {job_state(cluster, i) for i in ids} == {"COMPLETED"}
    assert not any(r["is_active"] for r in api.iter_items(f"/workflows/{wf}/compute_nodes"))


def test_scancel_is_reported_by_nodes_list(
    server: EmbeddedServer, api: Client, cluster: SlurmCluster, tmp_path: Path
) -> None:
    pid_file = tmp_path / "long.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    wf, _keys = build(api, [{"name": "long", "command": py(code)}])
    cfg = slurm_config(api, wf)
    [node] = schedule(server, cluster, tmp_path, wf, cfg, 1)
    sid = str(node["scheduler_id"])
    wait_for(
        "the job to run",
        lambda: statuses(api, wf)["long"] == "submitted",
        30,
        lambda: node_logs(tmp_path / "scripts"),
    )
    listed = hpcflow_json("nodes", "list", wf, "--url", server.url, env=cluster.env, cwd=tmp_path)
    assert [
        (d["scheduler_id"], d["live_status"], d["status"])
        for d in listed["scheduled_compute_nodes"]
    ] == [(sid, "running", "running")]
    cluster.run("scancel", sid)
    submitter = SlurmSubmitter(script_dir=tmp_path / "scripts", env=cluster.env)
    wait_for(
        "status() to say canceled", lambda: submitter.status([sid])[sid] == NodeState.CANCELED, 30
    )
    listed = hpcflow_json("nodes", "list", wf, "--url", server.url, env=cluster.env, cwd=tmp_path)
    [doc] = listed["scheduled_compute_nodes"]
    assert (doc["live_status"], doc["status"], doc["message"]) == (
        "canceled",
        "canceled",
        "ended: canceled",
    )
    # The listing stored what it saw: the server's document says canceled too.
    [stored] = api.iter_items(f"/workflows/{wf}/scheduled_compute_nodes")
    assert stored["status"] == "canceled"
    table = hpcflow("nodes", "list", wf, "--url", server.url, env=cluster.env, cwd=tmp_path)
    assert sid in table.stdout and "canceled" in table.stdout


def test_job_longer_than_the_walltime_is_never_claimed(
    server: EmbeddedServer, api: Client, cluster: SlurmCluster, tmp_path: Path
) -> None:
    wf, _keys = build(
        api,
        [
            {"name": "too_long", "command": py("pass"), "runtime": "P0DT2M"},
            {"name": "fits", "command": py("pass"), "runtime": "P0DT10S"},
        ],
    )
    cfg = slurm_config(api, wf, walltime="00:01:00")
    # A 5 s buffer leaves ~55 s for jobs: the 10 s job fits, the 2-minute one never does.
    [node] = schedule(
        server,
        cluster,
        tmp_path,
        wf,
        cfg,
        1,
        "--idle-timeout",
        "2",
        "--runner-arg=--walltime-buffer=5",
    )
    sid = str(node["scheduler_id"])

    def explain() -> str:
        return f"{statuses(api, wf)}\n{node_logs(tmp_path / 'scripts')}"

    wait_for("the fitting job to finish", lambda: statuses(api, wf)["fits"] == "done", 30, explain)
    assert statuses(api, wf)["too_long"] == "ready"
    # The runner offered less than two minutes, idled, and left; the long job is still ready.
    wait_for("the allocation to end", lambda: sid not in live_ids(cluster), 30, explain)
    assert job_state(cluster, sid) == "COMPLETED"
    assert statuses(api, wf) == {"too_long": "ready", "fits": "done"}
    [runner] = api.iter_items(f"/workflows/{wf}/compute_nodes")
    assert 30 < parse_duration(runner["resources"]["time_limit"]) < 60
