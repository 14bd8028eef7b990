"""initialize_jobs: derived dependencies, counters, options, and the pre-start checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.engine.helpers import Api


def blocks_edges(engine: Engine) -> set[tuple[int, int]]:
    with engine.connect() as conn:
        return {
            tuple(r)
            for r in conn.execute(
                text(  # type: ignore[misc]
                    "SELECT from_id, to_id FROM edges WHERE name = 'blocks'"
                )
            )
        }


def counters(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, blocked_count FROM jobs")).all())  # type: ignore[arg-type]


def test_edges_from_files_user_data_and_explicit_without_duplicates(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    f1, f2 = api.file("f1", "/x/f1"), api.file("f2", "/x/f2")
    ud = api.user_data("ud")
    a = api.job("a", output_files=[f1, f2], output_user_data=[ud])
    b = api.job("b", input_files=[f1, f2], blocked_by=[a["_id"]])
    c = api.job("c", input_user_data=[ud], input_files=[f2])
    d = api.job("d", blocked_by=[b["_id"], c["_id"]])
    out = api.initialize()
    ka, kb, kc, kd = (int(j["_key"]) for j in (a, b, c, d))
    assert blocks_edges(backend) == {(ka, kb), (ka, kc), (kb, kd), (kc, kd)}
    assert out["num_added_blocks_edges"] == 1 and out["num_ready"] == 1
    assert counters(backend) == {ka: 0, kb: 1, kc: 1, kd: 2}
    assert api.initialize()["num_added_blocks_edges"] == 0
    assert len(blocks_edges(backend)) == 4
    assert api.statuses() == {"a": "ready", "b": "blocked", "c": "blocked", "d": "blocked"}


def test_only_uninitialized_counts_finished_blockers(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    a = api.job("a")
    api.initialize()
    node = api.node()
    [job] = api.claim()
    api.complete(api.start(job, node), node)
    b = api.job("b", blocked_by=[a["_id"]])
    c = api.job("c", blocked_by=[b["_id"]])
    api.initialize(only_uninitialized=True)
    assert api.statuses() == {"a": "done", "b": "ready", "c": "blocked"}
    assert counters(backend)[int(c["_key"])] == 1


def test_reinitializing_recounts_jobs_already_blocked_or_ready(
    client: Any, workflow: str, backend: Engine
) -> None:
    api = Api(client, workflow)
    a, b = api.job("a"), api.job("b")
    c = api.job("c", blocked_by=[a["_id"], b["_id"]])
    d = api.job("d", blocked_by=[c["_id"]])
    api.initialize()
    ka, kb, kc, kd = (int(j["_key"]) for j in (a, b, c, d))
    assert counters(backend) == {ka: 0, kb: 0, kc: 2, kd: 1}
    # Rewire: a now waits for d, c waits only for b; d and b keep their status.
    for key, blocker in ((ka, d), (kc, b)):
        doc = api.get(f"/jobs/{key}")
        body = {f: doc[f] for f in ("name", "command", "_rev")}
        api.put(f"/jobs/{key}", {**body, "blocked_by": [blocker["_id"]]})
    with backend.begin() as conn:  # a stale counter on a ready job must be corrected too
        conn.execute(text("UPDATE jobs SET blocked_count = 5 WHERE id = :b"), {"b": kb})
    revs = {j["name"]: j["_rev"] for j in api.get("/jobs")["items"]}
    out = api.initialize()
    assert api.statuses() == {"a": "blocked", "b": "ready", "c": "blocked", "d": "blocked"}
    assert counters(backend) == {ka: 1, kb: 0, kc: 1, kd: 1}
    # Only a changed status (ready -> blocked); the others kept theirs and their revisions.
    after = {j["name"]: j["_rev"] for j in api.get("/jobs")["items"]}
    assert [n for n in revs if revs[n] != after[n]] == ["a"]
    assert out["num_blocked"] == 1 and out["num_ready"] == 0


def test_clear_ephemeral_and_refresh_requirements(client: Any, workflow: str) -> None:
    api = Api(client, workflow)
    keep = api.user_data("keep", {"x": 1})
    tmp = api.user_data("tmp", {"x": 1}, ephemeral=True)
    rr = api.rr("rr", num_cpus=2, memory="1g")
    api.job("a", resource_requirements=rr)
    api.initialize(clear_ephemeral_user_data=False)
    assert api.get(f"/user_data/{tmp.split('/')[1]}")["data"] == {"x": 1}
    api.initialize()
    assert api.get(f"/user_data/{tmp.split('/')[1]}")["data"] == {}
    assert api.get(f"/user_data/{keep.split('/')[1]}")["data"] == {"x": 1}
    doc = api.get(f"/resource_requirements/{rr.split('/')[1]}")
    api.put(f"/resource_requirements/{doc['_key']}", {**doc, "num_cpus": 16, "memory": "2g"})
    api.initialize()
    internal = api.jobs()["a"]["internal"]
    assert internal["num_cpus"] == 16 and internal["memory_bytes"] == 2 * 1024**3
    assert api.claim({"num_cpus": 8, "memory_gb": 100, "num_gpus": 0, "num_nodes": 1}) == []


def test_required_existing_files_and_missing_user_data(
    client: Any, workflow: str, tmp_path: Path
) -> None:
    api = Api(client, workflow)
    present = tmp_path / "present.txt"
    present.write_text("x")
    missing = api.file("missing", str(tmp_path / "missing.txt"))
    there = api.file("there", str(present))
    made = api.file("made", str(tmp_path / "made.txt"))
    given = api.user_data("given", {"v": 1})
    empty = api.user_data("empty")
    produced = api.user_data("produced")
    p = api.job("p", output_files=[made], output_user_data=[produced])
    api.job("c", input_files=[missing, there, made], input_user_data=[given, empty, produced])
    key = lambda ref: ref.split("/")[1]  # noqa: E731
    assert api.get("/required_existing_files") == {"files": [key(missing)]}
    assert api.get("/missing_user_data") == {"user_data": [key(empty)]}
    api.initialize()
    node = api.node()
    [job] = api.claim()
    assert job["_key"] == p["_key"]
    api.complete(api.start(job, node), node)
    # Its producer is done but it stored nothing: that data should exist now.
    assert api.get("/missing_user_data") == {"user_data": sorted([key(empty), key(produced)])}
