"""16 processes, each with its own engine, claim from 10,000 ready jobs: each job exactly once."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from hpcflow import db
from hpcflow.engine import claims
from hpcflow.engine.initialize import initialize_jobs
from hpcflow.engine.job_docs import add_jobs
from hpcflow.engine.workflows import create_workflow
from hpcflow.models import ComputeNode
from hpcflow.models.job import JobIn
from hpcflow.models.nodes import NodeResources

NUM_JOBS = 10_000
NUM_PROCS = 16


def _claimer(url: str, workflow: int, node: int, cpus: int, barrier: Any, out: Any) -> None:
    """Claim until nothing is left; report the claimed keys (or the error)."""
    try:
        engine = db.make_engine(url)
        factory = db.session_factory(engine)
        resources = NodeResources(num_cpus=cpus, memory_gb=64, num_gpus=0, num_nodes=1)
        got: list[int] = []
        barrier.wait()
        while True:
            with db.transaction(factory, immediate=True) as session:
                reply = claims.prepare_jobs_for_submission(
                    session, workflow, resources, compute_node_key=str(node)
                )
            if not reply["jobs"]:
                break
            got.extend(int(j["_key"]) for j in reply["jobs"])
        engine.dispose()
        out.put((node, got, None))
    except Exception:
        out.put((node, [], traceback.format_exc()))


def _setup(engine: Engine) -> tuple[int, list[int]]:
    factory = db.session_factory(engine)
    with db.transaction(factory) as session:
        wf = create_workflow(session, {"user": "test", "name": "many"})
        add_jobs(session, wf.id, [JobIn(command=f"job {i}") for i in range(NUM_JOBS)])
        nodes = []
        for i in range(NUM_PROCS):
            node = ComputeNode(
                workflow_id=wf.id, hostname=f"n{i}", pid=i, start_time="now", resources={}
            )
            session.add(node)
            session.flush()
            nodes.append(node.id)
        initialize_jobs(session, wf.id)
        return wf.id, nodes


def test_concurrent_claims_hand_out_each_job_once(backend: Engine) -> None:
    workflow, nodes = _setup(backend)
    url = backend.url.render_as_string(hide_password=False)
    ctx = mp.get_context("fork")  # children start instantly; each makes its own engine
    barrier, out = ctx.Barrier(NUM_PROCS), ctx.Queue()
    procs = [
        ctx.Process(target=_claimer, args=(url, workflow, node, 4 + 4 * (i % 8), barrier, out))
        for i, node in enumerate(nodes)
    ]
    for p in procs:
        p.start()
    reports = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [err for _, _, err in reports if err]
    assert not errors, errors[0]
    claimed = [key for _, keys, _ in reports for key in keys]
    assert len(claimed) == NUM_JOBS, "every job claimed"
    assert len(set(claimed)) == NUM_JOBS, "no job claimed twice"
    assert sum(1 for _, keys, _ in reports if keys) > 1, "claims were spread over processes"
    with backend.connect() as conn:
        rows = conn.execute(
            text("SELECT id, status, compute_node_id FROM jobs WHERE workflow_id = :wf"),
            {"wf": workflow},
        ).all()
    owner = {key: node for node, keys, _ in reports for key in keys}
    assert {status for _, status, _ in rows} == {"submitted_pending"}
    assert all(owner[key] == node for key, _, node in rows)
