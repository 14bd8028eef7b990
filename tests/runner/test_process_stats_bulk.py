"""bulk_job_process_stats: many runs' stats and their process_used edges, all or nothing."""

from __future__ import annotations

from typing import Any

from tests.conftest import row_counts


def _stats(job_key: str, run_id: int, max_rss: float) -> dict[str, Any]:
    return {
        "job_key": job_key,
        "run_id": run_id,
        "avg_cpu_percent": 50.0,
        "max_cpu_percent": 90.0,
        "avg_rss": max_rss / 2,
        "max_rss": max_rss,
        "num_samples": 1,
        "timestamp": "2026-01-01T00:00:00",
    }


def test_bulk_stats_are_stored_and_linked_to_their_jobs(client: Any, workflow: str) -> None:
    jobs = [
        client.post(f"/workflows/{workflow}/jobs", json={"command": "true"}).json["_key"]
        for _ in range(3)
    ]
    body = {
        "stats": [
            _stats(jobs[0], 1, 1e6),
            _stats(f"jobs/{jobs[1]}", 1, 2e6),
            _stats(jobs[2], 2, 3e6),
        ]
    }
    resp = client.post(f"/workflows/{workflow}/bulk_job_process_stats", json=body)
    assert resp.status_code == 200, resp.json
    assert resp.json["count"] == 3
    for job, peak in zip(jobs, (1e6, 2e6, 3e6), strict=True):
        stats = client.get(f"/workflows/{workflow}/jobs/{job}/process_stats").json
        assert [s["max_rss"] for s in stats] == [peak]
    edges = client.get(f"/workflows/{workflow}/edges/process_used").json["items"]
    assert sorted(e["_from"] for e in edges) == sorted(f"jobs/{j}" for j in jobs)
    stat_ids = {e["_to"] for e in edges}
    assert len(stat_ids) == 3 and all(t.startswith("job_process_stats/") for t in stat_ids)


def test_bulk_stats_with_an_unknown_job_store_nothing(client: Any, workflow: str, app: Any) -> None:
    job = client.post(f"/workflows/{workflow}/jobs", json={"command": "true"}).json["_key"]
    engine = app.extensions["hpcflow"].engine
    before = row_counts(engine)
    unknown = client.post(
        f"/workflows/{workflow}/bulk_job_process_stats",
        json={"stats": [_stats(job, 1, 1.0), _stats("999", 1, 1.0)]},
    )
    assert unknown.status_code == 404
    assert "stats[1].job_key" in unknown.json["errorMessage"]
    negative = client.post(
        f"/workflows/{workflow}/bulk_job_process_stats", json={"stats": [_stats(job, 1, -5.0)]}
    )
    assert negative.status_code == 422 and "max_rss" in negative.json["errorMessage"]
    assert (
        client.post("/workflows/999/bulk_job_process_stats", json={"stats": []}).status_code == 404
    )
    assert row_counts(engine) == before
