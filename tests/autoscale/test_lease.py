"""The loop lease: one acting loop; concurrent ticks (threads, PG processes) never double-launch."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

from sqlalchemy.engine import Engine

from hpcflow.autoscale import lease, tick
from hpcflow.autoscale.loop import Autoscaler, run_once
from tests.autoscale.helpers import (
    NOW,
    SETTINGS,
    FakeSubmitter,
    add_jobs,
    events,
    scheduled,
    sessions,
    slurm_config,
)
from tests.engine.helpers import Api


def test_lease_compare_and_set(app: Any) -> None:
    factory = sessions(app)
    assert lease.acquire(factory, "a", NOW, 60)
    assert not lease.acquire(factory, "b", NOW + 30, 60)
    assert lease.acquire(factory, "a", NOW + 30, 60)  # the holder renews
    assert not lease.acquire(factory, "b", NOW + 89, 60)
    assert lease.acquire(factory, "b", NOW + 91, 60)  # lapsed: anyone may take it
    assert not lease.acquire(factory, "a", NOW + 92, 60)
    lease.release(factory, "b")
    assert lease.acquire(factory, "a", NOW + 93, 60)


def _workflow(client: Any, workflow: str) -> str:
    api = Api(client, workflow)
    cfg = slurm_config(api)
    add_jobs(api, "job", 6, num_cpus=8, memory="1g", runtime="P0DT1H")
    api.initialize()
    return cfg


def test_two_threads_never_double_launch(app: Any, client: Any, workflow: str) -> None:
    _workflow(client, workflow)
    fake = FakeSubmitter()
    start = threading.Barrier(2)
    reports: list[Any] = []

    def loop(holder: str) -> None:
        start.wait()
        reports.append(run_once(sessions(app), holder, {"slurm": fake}, SETTINGS, now=NOW))

    threads = [threading.Thread(target=loop, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    acted = [r for r in reports if r is not None]
    assert len(reports) == 2 and len(acted) == 1
    assert fake.launched == 6 and len(scheduled(app, workflow)) == 6


def test_slow_tick_holds_off_the_other_loop(app: Any, client: Any, workflow: str) -> None:
    """While one loop is inside submit(), another loop's tick is refused, not run in parallel."""
    _workflow(client, workflow)
    fake = FakeSubmitter()
    inside = threading.Event()
    go = threading.Event()
    others: list[Any] = []

    def hold() -> None:
        inside.set()
        go.wait(30)

    fake.before_submit = hold
    first = threading.Thread(
        target=run_once, args=(sessions(app), "a", {"slurm": fake}, SETTINGS, NOW)
    )
    first.start()
    assert inside.wait(30)
    others.append(run_once(sessions(app), "b", {"slurm": fake}, SETTINGS, now=NOW + 1))
    fake.before_submit = None
    go.set()
    first.join(60)
    assert others == [None]
    assert fake.launched == 6


def _tick_in_process(url: str, holder: str, barrier: Any, out: Any) -> None:
    """Child process: its own engine and fake submitter, racing the other child for the lease."""
    from hpcflow import db

    engine = db.make_engine(url)
    fake = FakeSubmitter(prefix=holder)
    barrier.wait()
    report = run_once(db.session_factory(engine), holder, {"slurm": fake}, SETTINGS, now=NOW)
    out.put((holder, None if report is None else report.total_launched, fake.launched))
    engine.dispose()


def test_two_processes_never_double_launch(
    app: Any, client: Any, workflow: str, backend: Engine
) -> None:
    """Two processes, each with its own engine, race for the lease: one launches, once."""
    _workflow(client, workflow)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    url = backend.url.render_as_string(hide_password=False)
    procs = [
        ctx.Process(target=_tick_in_process, args=(url, f"p{i}-", barrier, out)) for i in range(2)
    ]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    acted = [g for g in got if g[1] is not None]
    assert len(acted) == 1 and acted[0][1] == 6, got
    assert sum(g[2] for g in got) == 6
    assert len(scheduled(app, workflow)) == 6


def test_loop_starts_and_stops_with_apscheduler(app: Any, client: Any, workflow: str) -> None:
    _workflow(client, workflow)
    fake = FakeSubmitter()
    done = threading.Event()
    settings = SETTINGS.model_copy(update={"autoscale_interval_seconds": 3600})
    scaler = Autoscaler(sessions(app), settings, {"slurm": fake})
    original = scaler.run

    def run() -> None:
        original()
        done.set()

    scaler.run = run  # type: ignore[method-assign]
    assert scaler.scheduler is None  # nothing starts in the constructor
    scaler.start()
    try:
        assert done.wait(30)  # the first tick runs right away
        job = scaler.scheduler.get_job("autoscale")
        assert job.max_instances == 1 and job.coalesce is True
    finally:
        scaler.stop()
    assert fake.launched == 6 and scaler.last is not None
    # stop() handed the lease back: another loop may act at once.
    assert lease.acquire(sessions(app), "other", NOW * 2, 60)


def test_keeper_renews_the_lease_during_a_long_tick(app: Any) -> None:
    factory = sessions(app)
    clock = [NOW]
    assert lease.acquire(factory, "a", NOW, 60)
    keeper = lease.Keeper(factory, "a", 60, clock=lambda: clock[0])
    clock[0] = NOW + 10
    assert keeper.keep()  # not due yet: no write
    clock[0] = NOW + 50
    assert keeper.keep()  # renewed until NOW + 110
    assert not lease.acquire(factory, "b", NOW + 100, 60)  # without renewal b would win here
    assert lease.acquire(factory, "b", NOW + 111, 60)
    clock[0] = NOW + 120
    assert not keeper.keep()


def test_tick_stops_acting_when_the_lease_is_lost(app: Any, client: Any, workflow: str) -> None:
    _workflow(client, workflow)
    fake = FakeSubmitter()
    answers = iter([True, True, False])
    with sessions(app)() as session:
        report = tick(session, NOW, {"slurm": fake}, SETTINGS, keep=lambda: next(answers))
    assert fake.launched == 2 and len(scheduled(app, workflow)) == 2
    assert report.errors == ["lost the autoscaler lease; another loop acts from here"]
    # The launches that happened are recorded, with their event.
    launched = [e["scheduler_ids"] for e in events(app, workflow, "autoscale")]
    assert launched == [["1001", "1002"]]
