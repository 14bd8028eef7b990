"""Bad input to the auto-tune and report routes: a 4xx naming the culprit, nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.autotune.helpers import GIB, configure, finish, unsampled
from tests.conftest import row_counts
from tests.engine.helpers import Api


@pytest.fixture
def tuned(client: Any, workflow: str) -> tuple[Api, str]:
    """A workflow whose group has 2 successful runs with stats (auto-tune needs 3)."""
    api = Api(client, workflow)
    rr = api.rr("r", memory="4g")
    for i in range(3):
        api.job(f"j{i}", resource_requirements=rr)
    api.initialize()
    node = api.node()
    for job in api.claim(limit=2):
        finish(api, node, job, rss=1 * GIB)
    return api, rr


@pytest.mark.parametrize(
    ("method", "path", "body", "code", "culprit"),
    [
        (
            "POST",
            "/auto_tune/apply",
            {"resource_requirements": ["files/1"]},
            422,
            "resource_requirements[0]",
        ),
        (
            "POST",
            "/auto_tune/apply",
            {"resource_requirements": ["resource_requirements/x"]},
            422,
            "resource_requirements[0]",
        ),
        (
            "POST",
            "/auto_tune/apply",
            {"resource_requirements": ["resource_requirements/999"]},
            404,
            "999",
        ),
        ("POST", "/auto_tune/apply", {"resource_requirements": "r"}, 422, "resource_requirements"),
        ("POST", "/auto_tune/apply", {"min_samples": 0}, 422, "min_samples"),
        ("POST", "/auto_tune/apply", {"bogus": 1}, 422, "bogus"),
        ("POST", "/auto_tune/apply", "not json", 400, "JSON"),
        ("GET", "/reports/utilization?run_id=abc", None, 400, "run_id"),
        ("GET", "/reports/utilization?run_id=-1", None, 422, "run_id"),
        ("GET", "/reports/results?limit=-5", None, 422, "limit"),
        ("GET", "/reports/results?run_id=1.5", None, 400, "run_id"),
    ],
)
def test_bad_input_names_the_culprit_and_writes_nothing(
    tuned: tuple[Api, str], backend: Any, method: str, path: str, body: Any, code: int, culprit: str
) -> None:
    api, _rr = tuned
    before = row_counts(backend)
    kwargs: dict[str, Any] = {"method": method}
    if isinstance(body, str):
        kwargs.update(data=body, content_type="application/json")
    elif body is not None:
        kwargs["json"] = body
    resp = api.client.open(f"/workflows/{api.wf}{path}", **kwargs)
    assert resp.status_code == code, resp.json
    assert culprit in resp.json["errorMessage"]
    assert row_counts(backend) == before
    assert unsampled(api.client.application, api.wf) == 2  # not even the stats were taken in


def test_too_few_samples_is_a_conflict_and_rolls_back(tuned: tuple[Api, str], backend: Any) -> None:
    api, rr = tuned
    before = row_counts(backend)
    out = api.post("/auto_tune/apply", {"resource_requirements": [rr]}, expect=409)
    assert "has 2 samples" in out["errorMessage"] and rr in out["errorMessage"]
    assert row_counts(backend) == before
    assert unsampled(api.client.application, api.wf) == 2
    # With a lower bar the same request applies: memory 1 GiB x 1.2.
    [change] = api.post("/auto_tune/apply", {"resource_requirements": [rr], "min_samples": 2})[
        "applied"
    ]
    assert change["new"]["memory"] == "1228m" and change["num_samples"] == 2


def test_unknown_workflow_and_config_values(client: Any, workflow: str, backend: Any) -> None:
    api = Api(client, workflow)
    for path in ("/auto_tune/suggestions", "/reports/utilization", "/reports/results"):
        resp = client.get(f"/workflows/9999{path}")
        assert resp.status_code == 404 and "9999" in resp.json["errorMessage"]
    assert client.post("/workflows/9999/auto_tune/apply").status_code == 404
    before = row_counts(backend)
    for field, value in (
        ("auto_tune_mode", "sometimes"),
        ("auto_tune_min_samples", 0),
        ("auto_escalate", "perhaps"),
    ):
        current = api.get("/config")
        body = {k: v for k, v in current.items() if k not in ("_key", "_id")}
        resp = client.put(f"/workflows/{workflow}/config", json={**body, field: value})
        assert resp.status_code == 422 and field in resp.json["errorMessage"]
    assert row_counts(backend) == before
    assert configure(api, auto_tune_min_samples=5)["auto_tune_min_samples"] == 5
