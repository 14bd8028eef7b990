"""Input hashes (what can change a job's outcome) and statements built once per dialect."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select, union_all
from sqlalchemy.orm import Session

from hpcflow.engine.initialize import EDGES, chunks
from hpcflow.engine.statements import cached_statement
from hpcflow.models import File, Job, UserData


def input_hashes(
    session: Session,
    workflow_id: int,
    jobs: Sequence[Job],
    *,
    bumped_user_data: set[int] | None = None,
) -> dict[int, int]:
    """A 64-bit hash of what can change a job's outcome: command and input revisions.

    `bumped_user_data` counts those user data as one revision newer (a pending clear).
    """
    bumped = bumped_user_data or set()
    revs: dict[int, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    inputs = cached_statement(session, "inputs", _inputs)
    for chunk in chunks([j.id for j in jobs]):
        for job_id, name, target, rev in session.execute(inputs, {"wf": workflow_id, "ids": chunk}):
            bump = 1 if name != "needs" and target in bumped else 0
            revs[job_id][name].append((target, rev + bump))
    out = {}
    for job in jobs:
        mine = revs[job.id]
        payload = json.dumps(
            [
                job.command,
                job.invocation_script,
                *(sorted(mine[n]) for n in ("needs", "consumes", "stores")),
            ]
        )
        digest = hashlib.blake2b(payload.encode(), digest_size=8).digest()
        out[job.id] = int.from_bytes(digest, "big", signed=True)
    return out


def _inputs(_dialect: str) -> Any:
    """Jobs' input files and user data with their revisions (what input_hashes hashes)."""
    ids: Any = bindparam("ids", expanding=True)
    files = (
        select(EDGES.c.from_id, EDGES.c.name, EDGES.c.to_id, File.rev)  # type: ignore[call-overload]
        .join(File, File.id == EDGES.c.to_id)
        .where(
            EDGES.c.workflow_id == bindparam("wf"),
            EDGES.c.name == "needs",
            EDGES.c.to_coll == "files",
            EDGES.c.from_id.in_(ids),
        )
    )
    data = (
        select(EDGES.c.from_id, EDGES.c.name, EDGES.c.to_id, UserData.rev)  # type: ignore[call-overload]
        .join(UserData, UserData.id == EDGES.c.to_id)
        .where(
            EDGES.c.workflow_id == bindparam("wf"),
            EDGES.c.name.in_(["consumes", "stores"]),
            EDGES.c.to_coll == "user_data",
            EDGES.c.from_id.in_(ids),
        )
    )
    return union_all(files, data)
