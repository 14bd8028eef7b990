"""tick() with a fake submitter: launches, caps, unfit jobs, scale to zero, guards."""

from __future__ import annotations

from typing import Any

import pytest

from tests.autoscale.helpers import (
    NOW,
    FakeSubmitter,
    add_jobs,
    config_row,
    events,
    run_tick,
    scheduled,
    slurm_config,
)
from tests.engine.helpers import Api, run_to_completion


def test_mixed_sizes_launch_first_fit_decreasing(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api)  # 8 CPUs, 32 GB per node
    add_jobs(api, "big", 2, num_cpus=8, memory="16g", runtime="P0DT1H")
    add_jobs(api, "mid", 3, num_cpus=4, memory="8g", runtime="P0DT1H")
    add_jobs(api, "small", 6, num_cpus=1, memory="1g", runtime="P0DT1H")
    add_jobs(api, "fat", 1, num_cpus=1, memory="30g", runtime="P0DT1H")
    api.initialize()
    fake = FakeSubmitter()
    report = run_tick(app, {"slurm": fake})
    # 2 nodes for the 8-CPU jobs; the 30 GB job gets its own; 4+4 | 4+1x4 | 1x2 beside the fat one
    assert report.launched == {cfg: 5}
    assert fake.launched == 5
    rows = scheduled(app, workflow)
    assert [r.status for r in rows] == ["pending"] * 5
    assert {r.scheduler_config_id for r in rows} == {cfg}
    assert all(r.script and r.output_path and r.submitted_at == NOW for r in rows)
    assert fake.requests[0].scheduler_config_id == cfg
    # Queued allocations are supply: the next tick launches nothing more.
    again = run_tick(app, {"slurm": fake})
    assert again.total_launched == 0 and fake.launched == 5
    assert fake.status_calls[-1] == [r.scheduler_id for r in rows]  # one batched poll


def test_active_runner_room_counts_as_supply(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api)
    add_jobs(api, "job", 12, num_cpus=2, memory="1g", runtime="P0DT1H")
    api.initialize()
    body = {
        "hostname": "n1",
        "pid": 7,
        "start_time": "2024-01-01T00:00:00+00:00",
        "resources": {
            "num_cpus": 16,
            "memory_gb": 64,
            "num_gpus": 0,
            "num_nodes": 1,
            "scheduler_config_id": cfg,
        },
    }
    api.post("/compute_nodes", body)
    fake = FakeSubmitter()
    # 24 CPUs of work; the runner has 16 free, so one 8-CPU node is missing.
    assert run_tick(app, {"slurm": fake}).launched == {cfg: 1}


def _runner(api: Api, cfg: str, cpus: int) -> str:
    body = {
        "hostname": "n",
        "pid": 7,
        "start_time": "2024-01-01T00:00:00+00:00",
        "resources": {
            "num_cpus": cpus,
            "memory_gb": 64,
            "num_gpus": 0,
            "num_nodes": 1,
            "scheduler_config_id": cfg,
        },
    }
    return str(api.post("/compute_nodes", body)["_key"])


def test_busy_runners_room_is_counted_runner_by_runner(
    app: Any, client: Any, workflow: str
) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api)
    add_jobs(api, "job", 3, num_cpus=2, memory="1g", runtime="P0DT1H")
    api.initialize()
    room = {"num_cpus": 3, "memory_gb": 64, "num_gpus": 0, "num_nodes": 1}
    for cpus in (3, 3):
        assert len(api.claim(room, compute_node_key=_runner(api, cfg, cpus), limit=1)) == 1
    # Together the runners have 2 CPUs free, but each has only 1: the last job needs a node.
    assert run_tick(app, {"slurm": FakeSubmitter()}).launched == {cfg: 1}


@pytest.mark.parametrize(
    ("runner_cpus", "launched"),
    [
        (4, 1),  # the runner's 4 CPUs are taken: the last job gets a new node
        (6, 0),  # the runner has room: it takes the last job
    ],
)
def test_runner_room_decides_whether_the_last_job_needs_a_node(
    app: Any, client: Any, workflow: str, runner_cpus: int, launched: int
) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api)
    add_jobs(api, "job", 3, num_cpus=2, memory="1g", runtime="P0DT1H")
    api.initialize()
    node = _runner(api, cfg, runner_cpus)
    room = {"num_cpus": 4, "memory_gb": 64, "num_gpus": 0, "num_nodes": 1}
    assert len(api.claim(room, compute_node_key=node, limit=2)) == 2
    report = run_tick(app, {"slurm": FakeSubmitter()})
    assert report.total_launched == launched
    if launched:
        assert report.launched == {cfg: launched}


def test_max_nodes_and_max_queued(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api, max_nodes=3, max_queued=2)
    add_jobs(api, "job", 10, num_cpus=8, memory="1g", runtime="P0DT1H")
    api.initialize()
    fake = FakeSubmitter()
    assert run_tick(app, {"slurm": fake}).launched == {cfg: 2}  # max_queued
    assert run_tick(app, {"slurm": fake}).total_launched == 0
    fake.states["1001"] = "running"
    assert run_tick(app, {"slurm": fake}).launched == {cfg: 1}  # max_nodes - open = 1
    fake.states["1002"] = "running"
    assert run_tick(app, {"slurm": fake}).total_launched == 0  # 3 open = max_nodes
    assert fake.launched == 3
    assert [r.status for r in scheduled(app, workflow)] == ["running", "running", "pending"]


def test_nothing_fits_one_event(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api, mem="256g")
    huge = add_jobs(api, "huge", 2, num_cpus=1, memory="512g", runtime="P0DT1H")
    long = add_jobs(api, "long", 1, num_cpus=1, memory="1g", runtime="P0DT5H")
    api.initialize()
    fake = FakeSubmitter()
    for i in range(3):
        report = run_tick(app, {"slurm": fake}, now=NOW + i)
        assert report.total_launched == 0
    assert fake.launched == 0
    said = events(app, workflow, "unschedulable")
    assert len(said) == 2, said
    messages = sorted(e["message"] for e in said)
    assert messages[0] == (
        f"job {huge[0]} (and 1 more like it) needs 512 GB; the largest node of {cfg} has 256 GB"
    )
    assert messages[1].startswith(
        f"job {long[0]} needs a runtime of 18000 s; the walltime of {cfg} is 14400 s"
    )


def test_scale_to_zero_cancels_queued(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api)
    add_jobs(api, "job", 3, num_cpus=8, memory="1g", runtime="P0DT1H")
    api.initialize()
    fake = FakeSubmitter()
    assert run_tick(app, {"slurm": fake}).launched == {cfg: 3}
    fake.states["1001"] = "running"
    # The work is done elsewhere (a runner of no config here): nothing is left for the queue.
    run_to_completion(api, api.node())
    report = run_tick(app, {"slurm": fake})
    assert report.total_launched == 0
    assert sorted(fake.canceled) == ["1002", "1003"]
    rows = {r.scheduler_id: r for r in scheduled(app, workflow)}
    assert rows["1001"].status == "running"  # a started runner leaves on its idle timeout
    assert rows["1002"].status == rows["1003"].status == "canceled"
    assert "no work left" in (rows["1002"].message or "")
    assert [e["type"] for e in events(app, workflow, "autoscale")] == ["launch", "release"]
    assert run_tick(app, {"slurm": fake}).canceled == []


def test_blocked_work_keeps_queue(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    slurm_config(api)
    rr = api.rr("r", num_cpus=8, memory="1g", runtime="P0DT1H")
    first = api.job("first", resource_requirements=rr)
    api.job("second", resource_requirements=rr, blocked_by=[first["_id"]])
    api.initialize()
    fake = FakeSubmitter()
    assert run_tick(app, {"slurm": fake}).total_launched == 1
    node = api.node()
    claimed = api.claim()
    assert [j["name"] for j in claimed] == ["first"]
    api.start(claimed[0], node)
    # No ready work, but "second" will be ready soon: the queued node stays.
    assert run_tick(app, {"slurm": fake}).canceled == []


def test_pause_after_five_failures_and_resume(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api)
    add_jobs(api, "job", 2, num_cpus=8, memory="1g", runtime="P0DT1H")
    api.initialize()
    fake = FakeSubmitter()
    fake.fail = "sbatch: error: Batch job submission failed: Invalid account"
    for i in range(5):
        report = run_tick(app, {"slurm": fake}, now=NOW + i)
        assert report.total_launched == 0 and len(report.errors) == 1
    assert report.paused == [cfg]
    row = config_row(app, cfg)
    assert row.is_paused and row.consecutive_failures == 5
    assert row.last_error == fake.fail
    paused = [e for e in events(app, workflow, "autoscale") if e["type"] == "paused"]
    assert len(paused) == 1 and fake.fail in paused[0]["message"]
    # Paused: no more attempts, however many ticks.
    run_tick(app, {"slurm": fake}, now=NOW + 10)
    assert fake.attempts == 5
    key = cfg.split("/")[1]
    shown = api.get(f"/slurm_schedulers/{key}")
    assert shown["is_paused"] is True and shown["last_error"] == fake.fail
    fake.fail = None
    resumed = api.post(f"/schedulers/slurm_schedulers/{key}/resume")
    assert resumed["is_paused"] is False and resumed["consecutive_failures"] == 0
    assert run_tick(app, {"slurm": fake}, now=NOW + 11).launched == {cfg: 2}
    assert config_row(app, cfg).consecutive_failures == 0


def test_pause_route_stops_launches(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api)
    add_jobs(api, "job", 1, num_cpus=1, memory="1g", runtime="P0DT1H")
    api.initialize()
    key = cfg.split("/")[1]
    assert api.post(f"/schedulers/slurm_schedulers/{key}/pause")["is_paused"] is True
    fake = FakeSubmitter()
    assert run_tick(app, {"slurm": fake}).total_launched == 0 and fake.attempts == 0
    api.post("/schedulers/nope_schedulers/1/pause", expect=404)
    api.post("/schedulers/slurm_schedulers/999/resume", expect=404)
    api.post(f"/schedulers/slurm_schedulers/{key}/resume")
    assert run_tick(app, {"slurm": fake}).total_launched == 1


def test_unknown_state_never_submits(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    cfg = slurm_config(api, max_queued=1)
    add_jobs(api, "job", 4, num_cpus=8, memory="1g", runtime="P0DT1H")
    api.initialize()
    fake = FakeSubmitter()
    assert run_tick(app, {"slurm": fake}).launched == {cfg: 1}
    fake.states["1001"] = "unknown"
    for i in range(3):
        assert run_tick(app, {"slurm": fake}, now=NOW + i).total_launched == 0
    assert [r.status for r in scheduled(app, workflow)] == ["unknown"]
    # It may be running after all: an unknown allocation is never cancelled as idle either.
    assert fake.canceled == []
    # A queue that cannot be read is as unknown as it gets.
    fake.states["1001"] = "running"
    fake.status_error = "squeue: error: slurm_load_jobs error: Socket timed out"
    report = run_tick(app, {"slurm": fake}, now=NOW + 5)
    assert report.total_launched == 0 and "Socket timed out" in report.errors[0]
    fake.status_error = None
    assert run_tick(app, {"slurm": fake}, now=NOW + 6).launched == {cfg: 1}


def test_unassigned_and_assigned_jobs_route_to_configs(
    app: Any, client: Any, workflow: str
) -> None:
    api = Api(client, workflow)
    small = slurm_config(api, cpus_per_task=4, mem="8g")
    gpu = slurm_config(api, cpus_per_task=16, mem="64g", gpus=2)
    add_jobs(api, "gpu", 2, scheduler=gpu, num_cpus=8, memory="4g", num_gpus=1, runtime="P0DT1H")
    add_jobs(api, "any", 3, num_cpus=4, memory="4g", runtime="P0DT1H")
    add_jobs(api, "wide", 1, num_cpus=12, memory="4g", runtime="P0DT1H")
    api.initialize()
    fake = FakeSubmitter()
    report = run_tick(app, {"slurm": fake})
    # The GPU jobs share one GPU node; "wide" fits only the GPU config and opens a second one,
    # where one "any" job fills the last 4 CPUs; the two other "any" jobs go to the first
    # config that fits them: two small nodes.
    assert report.launched == {gpu: 2, small: 2}, report
