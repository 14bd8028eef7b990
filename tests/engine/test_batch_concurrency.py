"""8 processes run a layered workflow with batch completions that claim (with a lookahead):
every job runs exactly once, on the node that claimed it."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from hpcflow import db
from hpcflow.engine import batch
from hpcflow.engine.initialize import initialize_jobs
from hpcflow.engine.job_docs import add_jobs
from hpcflow.engine.workflows import create_workflow
from hpcflow.models import ComputeNode
from hpcflow.models.job import JobIn

WIDTH, LAYERS, NUM_PROCS = 100, 8, 8
NODE = {"num_cpus": 4, "memory_gb": 64, "num_gpus": 0, "num_nodes": 1}


def _runner(url: str, workflow: int, node: int, barrier: Any, out: Any) -> None:
    """Complete whatever the last answer claimed, claiming more in the same request."""
    try:
        engine = db.make_engine(url)
        factory = db.session_factory(engine)
        ran: list[tuple[int, int]] = []  # (job, order of its completion request)
        held: list[dict[str, Any]] = []
        barrier.wait()
        for step in range(10_000):
            body = batch.CompleteJobsIn.model_validate(
                {
                    "run_id": 0,
                    "compute_node_key": str(node),
                    "start": [{"key": j["_key"], "rev": j["_rev"]} for j in held],
                    "jobs": [
                        {
                            "key": j["_key"],
                            "rev": j["_rev"],
                            "status": "done",
                            "result": {
                                "job_key": j["_key"],
                                "run_id": 0,
                                "return_code": 0,
                                "exec_time_minutes": 0.0,
                                "completion_time": "now",
                                "status": "done",
                            },
                        }
                        for j in held
                    ],
                    "claim": {"resources": NODE, "lookahead": 4},
                }
            )
            with db.transaction(factory, immediate=True) as session:
                answer = batch.complete_jobs(session, workflow, body)
            if answer["errors"]:
                raise AssertionError(answer["errors"])
            ran.extend((int(c["_key"]), step) for c in answer["completed"])
            held = answer["jobs"]
            if not held:
                with factory() as session:
                    left = session.execute(
                        text(
                            "SELECT count(*) FROM jobs WHERE workflow_id = :wf AND status != 'done'"
                        ),
                        {"wf": workflow},
                    ).scalar_one()
                if not left:
                    break
        engine.dispose()
        out.put((node, ran, None))
    except Exception:
        out.put((node, [], traceback.format_exc()))


def test_concurrent_batch_runners_run_each_job_once(backend: Engine) -> None:
    factory = db.session_factory(backend)
    with db.transaction(factory) as session:
        wf = create_workflow(session, {"user": "test", "name": "layers"}).id
        keys: list[int] = []
        for layer in range(LAYERS):
            items = [
                JobIn(
                    command=f"job {layer}.{i}",
                    blocked_by=[f"jobs/{keys[-WIDTH + i]}"] if layer else [],
                )
                for i in range(WIDTH)
            ]
            keys += add_jobs(session, wf, items)
        nodes = []
        for i in range(NUM_PROCS):
            node = ComputeNode(
                workflow_id=wf, hostname=f"n{i}", pid=i, start_time="now", resources=NODE
            )
            session.add(node)
            session.flush()
            nodes.append(node.id)
        initialize_jobs(session, wf)
    url = backend.url.render_as_string(hide_password=False)
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(NUM_PROCS), ctx.Queue()
    procs = [ctx.Process(target=_runner, args=(url, wf, node, barrier, out)) for node in nodes]
    for p in procs:
        p.start()
    reports = [out.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [err for _, _, err in reports if err]
    assert not errors, errors[0]
    ran = [job for _, jobs, _ in reports for job, _ in jobs]
    assert sorted(ran) == sorted(keys), "every job completed exactly once"
    assert sum(1 for _, jobs, _ in reports if jobs) > 1, "the work was spread over runners"
    with backend.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT j.id, j.status, j.compute_node_id, count(r.id) FROM jobs j JOIN results r "
                "ON r.job_key = CAST(j.id AS VARCHAR(20)) WHERE j.workflow_id = :wf "
                "GROUP BY j.id, j.status, j.compute_node_id"
            ),
            {"wf": wf},
        ).all()
    owner = {job: node for node, jobs, _ in reports for job, _ in jobs}
    assert len(rows) == len(keys)
    assert all(status == "done" and n == 1 and owner[job] == node for job, status, node, n in rows)
