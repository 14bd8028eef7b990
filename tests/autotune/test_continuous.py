"""Continuous auto-tune in suggest and apply modes, and the autoscaler sizing from it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text

from tests.autoscale.helpers import (
    FakeSubmitter,
    add_jobs,
    events,
    run_tick,
    sessions,
    slurm_config,
)
from tests.autotune.helpers import (
    GIB,
    MIB,
    configure,
    deactivate,
    finish,
    group_row,
    job_rows,
    unsampled,
)
from tests.engine.helpers import Api

UNTUNED = {"memory": "16g", "num_cpus": 4, "runtime": "P0DT2H"}
# Samples 1.0, 1.1, 0.9 GiB, 95 % CPU, 60 s: p95 (= max of 3) x 1.2, 1 CPU, 60 s x 1.3.
TUNED = {"memory": f"{int(1.1 * 1024 * 1.2)}m", "num_cpus": 1, "runtime": "P0DT1M18S"}


def _setup(api: Api, mode: str, n: int) -> tuple[str, str, str]:
    """A workflow of n identical over-asking jobs, a slurm config and an inactive node."""
    configure(api, auto_tune_mode=mode)
    cfg = slurm_config(api)  # 8 CPUs, 32 GB per node
    add_jobs(api, "w", n, num_cpus=4, memory="16g", runtime="P0DT2H")
    rr = api.get("/resource_requirements")["items"][0]["_id"]
    api.initialize()
    node = api.node()
    deactivate(api, node)  # its room must not count as autoscaler supply
    return cfg, rr, node


def _tune_events(app: Any, workflow: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events(app, workflow, "resource_requirements")
        if e["type"].startswith("auto_tune")
    ]


def test_apply_mode_tunes_the_group_and_the_next_tick_sizes_from_it(
    app: Any, client: Any, workflow: str
) -> None:
    api = Api(client, workflow)
    cfg, rr, node = _setup(api, "apply", 20)
    claimed = api.claim(limit=4)
    for job, rss in zip(claimed, (1.0, 1.1, 0.9), strict=False):
        finish(api, node, job, rss=rss * GIB, cpu=95.0, minutes=1.0)
    running = api.start(claimed[3], node)  # claimed and running: keeps its numbers
    assert group_row(app, rr) is None  # completion does not tune; the tick does
    fake = FakeSubmitter()
    report = run_tick(app, {"slurm": fake})
    assert report.errors == []
    # 16 ready jobs at 1 CPU / 1.29 GiB fit 8 to an 8-CPU node: 2 nodes (untuned, 2 a node: 8).
    assert report.launched == {cfg: 2}
    doc = api.get(f"/resource_requirements/{rr.split('/')[1]}")
    assert {k: doc[k] for k in TUNED} == TUNED
    rows = job_rows(app, workflow)
    assert rows[running["name"]].memory_bytes == 16 * GIB
    assert rows[running["name"]].num_cpus == 4
    ready = [j for j in rows.values() if j.status == "ready"]
    assert len(ready) == 16
    assert {(j.memory_bytes, j.num_cpus, j.runtime_seconds) for j in ready} == {
        (int(1.1 * 1024 * 1.2) * MIB, 1, 78.0)
    }
    [ev] = _tune_events(app, workflow)
    assert ev["type"] == "auto_tune" and ev["source"] == "apply"
    assert (ev["old"], ev["new"], ev["num_samples"]) == (UNTUNED, TUNED, 3)
    assert ev["num_jobs_updated"] == 19  # all but the running job
    # Incremental: nothing new, nothing counted twice, no event.
    assert unsampled(app, workflow) == 0
    run_tick(app, {"slurm": fake})
    assert group_row(app, rr).num_samples == 3  # type: ignore[union-attr]
    assert len(_tune_events(app, workflow)) == 1


def test_suggest_mode_records_and_changes_nothing(app: Any, client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    _cfg, rr, node = _setup(api, "suggest", 12)
    claimed = api.claim(limit=3)
    for job, rss in zip(claimed[:2], (1.0, 1.1), strict=True):
        finish(api, node, job, rss=rss * GIB, cpu=95.0)
    fake = FakeSubmitter()
    run_tick(app, {"slurm": fake})
    assert group_row(app, rr).num_samples == 2  # type: ignore[union-attr]
    assert _tune_events(app, workflow) == []  # fewer than auto_tune_min_samples (3)
    finish(api, node, claimed[2], rss=0.9 * GIB, cpu=95.0)
    run_tick(app, {"slurm": fake})
    [ev] = _tune_events(app, workflow)
    assert ev["type"] == "auto_tune_suggestion"
    assert (ev["old"], ev["new"], ev["num_samples"]) == (UNTUNED, TUNED, 3)
    doc = api.get(f"/resource_requirements/{rr.split('/')[1]}")
    assert {k: doc[k] for k in UNTUNED} == UNTUNED
    assert {(j.memory_bytes, j.num_cpus) for j in job_rows(app, workflow).values()} == {
        (16 * GIB, 4)
    }
    # The autoscaler sized from the untouched requirements: 2 jobs per node, 9 ready -> 5.
    assert fake.launched == 5
    run_tick(app, {"slurm": fake})
    assert len(_tune_events(app, workflow)) == 1  # the same suggestion is not repeated
    out = api.get("/auto_tune/suggestions")
    assert out["mode"] == "suggest" and out["changes"] == []
    [group] = out["groups"]
    assert group["current"] == UNTUNED and group["suggested"] == TUNED
    assert group["differs"] is True and group["num_samples"] == 3
    assert group["observed"]["memory_bytes"]["max"] == 1.1 * GIB
    applied = api.post("/auto_tune/apply")["applied"]
    assert [(a["old"], a["new"], a["num_samples"]) for a in applied] == [(UNTUNED, TUNED, 3)]
    assert {(j.memory_bytes, j.num_cpus) for j in job_rows(app, workflow).values()} == {
        (int(1.1 * 1024 * 1.2) * MIB, 1)
    }
    assert [e["source"] for e in _tune_events(app, workflow) if e["type"] == "auto_tune"] == [
        "request"
    ]
    assert api.post("/auto_tune/apply")["applied"] == []  # already tuned


def test_killed_runs_are_not_samples_and_escalated_jobs_keep_more(
    app: Any, client: Any, workflow: str
) -> None:
    api = Api(client, workflow)
    _cfg, rr, node = _setup(api, "apply", 6)
    claimed = api.claim(limit=4)
    # Killed at its memory limit, then retried with 24g: its stats describe the killed run.
    finish(
        api,
        node,
        claimed[0],
        code=137,
        rss=20 * GIB,
        stamp="2024-01-01T00:00:00",
        stats_stamp="2024-01-01T00:00:01",
    )
    for job in claimed[1:4]:
        finish(api, node, job, rss=1 * GIB, stamp="2024-01-01T00:00:02")
    run_tick(app, {"slurm": FakeSubmitter()})
    g = group_row(app, rr)
    assert g is not None and g.num_samples == 3 and g.max_memory_bytes == 1 * GIB
    rows = job_rows(app, workflow)
    assert rows[claimed[0]["name"]].memory_bytes == 24 * GIB  # escalated: keeps more
    assert rows[claimed[0]["name"]].status == "ready"
    assert rows["w5"].memory_bytes == int(1024 * 1.2) * MIB


def test_a_pass_with_nothing_new_reads_only_the_unsampled_index(
    app: Any, client: Any, workflow: str, backend: Any
) -> None:
    api = Api(client, workflow)
    _cfg, _rr, node = _setup(api, "apply", 8)
    for job in api.claim(limit=4):
        finish(api, node, job, rss=1 * GIB)
    fake = FakeSubmitter()
    run_tick(app, {"slurm": fake})
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "job_process_stats" in statement:
            seen.append(statement)

    event.listen(backend, "before_cursor_execute", record)
    try:
        run_tick(app, {"slurm": fake})
    finally:
        event.remove(backend, "before_cursor_execute", record)
    # One probe per tuned workflow, limited to one row, through the partial index.
    [probe] = seen
    assert "LIMIT" in probe.upper() and "sampled" in probe
    if backend.dialect.name == "sqlite":
        with sessions(app)() as s:
            plan = " ".join(
                str(r[-1]) for r in s.execute(text("EXPLAIN QUERY PLAN " + probe.replace("?", "1")))
            )
        assert "ix_job_process_stats_unsampled" in plan, plan
