"""bulk.existing_ids: which referenced keys are rows of one workflow, dense or scattered."""

from __future__ import annotations

from typing import Any

from hpcflow.engine import bulk
from hpcflow.models import File


def _files(client: Any, workflow: str, count: int) -> list[int]:
    return [
        int(
            client.post(
                f"/workflows/{workflow}/files", json={"name": f"f{i}", "path": f"p{i}"}
            ).json["_key"]
        )
        for i in range(count)
    ]


def test_dense_and_scattered_keys_name_only_this_workflows_rows(app: Any, client: Any) -> None:
    mine_wf = client.post("/workflows", json={"user": "u", "name": "mine"}).json["_key"]
    other_wf = client.post("/workflows", json={"user": "u", "name": "other"}).json["_key"]
    mine = _files(client, mine_wf, 5)
    other = _files(client, other_wf, 5)  # keys inside the range a dense read covers
    mine += _files(client, mine_wf, 5)
    missing = max(mine + other) + 1000
    with app.extensions["hpcflow"].sessions() as session:
        dense = bulk.existing_ids(session, File, int(mine_wf), [*mine, *other])
        assert dense == set(mine)
        scattered = bulk.existing_ids(session, File, int(mine_wf), [mine[0], missing, 10**9])
        assert scattered == {mine[0]}
        assert bulk.existing_ids(session, File, int(mine_wf), []) == set()
