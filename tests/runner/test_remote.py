"""Retry with backoff, and completing a job when the server's answer was lost or stale."""

from __future__ import annotations

from typing import Any

import pytest

from hpcflow.client import Client, ServerUnreachable
from hpcflow.errors import Conflict, HpcflowError, NotFound
from hpcflow.runner.finish import Finisher, result_doc, status_and_code
from hpcflow.runner.remote import Remote, ServerGone


def remote(retry_seconds: float = 100.0, **kw: Any) -> tuple[Remote, list[float]]:
    naps: list[float] = []
    return Remote(
        Client("http://127.0.0.1:9"), "1", retry_seconds=retry_seconds, sleep=naps.append, **kw
    ), naps


def test_transient_errors_are_retried_with_backoff() -> None:
    r, naps = remote()
    answers: list[Any] = [
        ServerUnreachable("down"),
        HpcflowError("500"),
        ServerUnreachable("down"),
        {"ok": True},
    ]

    def call() -> Any:
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert r.call(call) == {"ok": True}
    assert naps == [0.05, 0.1, 0.2] and r.retried


def test_client_errors_are_not_retried() -> None:
    r, naps = remote()

    def call() -> Any:
        raise NotFound("nope")

    with pytest.raises(NotFound):
        r.call(call)
    assert naps == [] and not r.retried


def test_gives_up_after_retry_seconds() -> None:
    r, _naps = remote(retry_seconds=0.0)

    def call() -> Any:
        raise ServerUnreachable("connection refused")

    with pytest.raises(ServerGone, match="unreachable for 0 s; last error: connection refused"):
        r.call(call)


def test_gives_up_at_once_when_asked_to_stop() -> None:
    r, naps = remote(should_abort=lambda: True)
    with pytest.raises(ServerGone):
        r.call(lambda: (_ for _ in ()).throw(ServerUnreachable("down")))
    assert naps == []


class FakeRemote:
    """Scripted complete_job answers and job documents."""

    def __init__(self, answers: list[Any], job: dict[str, Any], retried: bool = False) -> None:
        self.answers = answers
        self.job = job
        self.retried = retried
        self.calls: list[tuple[str, str]] = []

    def complete_job(
        self, key: str, status: str, rev: str, run_id: int, node: str, result: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append((status, rev))
        assert result["status"] == status
        item = self.answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def get_job(self, key: str) -> dict[str, Any]:
        return self.job


def test_complete_retries_a_stale_rev_as_canceled_after_a_workflow_cancel() -> None:
    fake = FakeRemote(
        [Conflict("stale _rev"), {"status": "canceled"}], {"status": "canceled", "_rev": "9"}
    )
    out = Finisher(fake, "1").complete("5", "3", 0, "done", 0, 1.0)  # type: ignore[arg-type]
    assert out == {"status": "canceled"}
    assert fake.calls == [("done", "3"), ("canceled", "9")]


def test_complete_accepts_a_result_the_server_already_stored() -> None:
    fake = FakeRemote(
        [Conflict("illegal done -> done")], {"status": "done", "_rev": "4"}, retried=True
    )
    out = Finisher(fake, "1").complete("5", "3", 0, "done", 0, 1.0)  # type: ignore[arg-type]
    assert out == {"status": "done", "_rev": "4"} and len(fake.calls) == 1


def test_complete_drops_a_result_for_a_job_reset_meanwhile() -> None:
    fake = FakeRemote([Conflict("stale run_id")], {"status": "ready", "_rev": "7"})
    assert Finisher(fake, "1").complete("5", "3", 0, "done", 0, 1.0) is None  # type: ignore[arg-type]


def test_result_doc_and_status_mapping() -> None:
    doc = result_doc("5", 2, 3, "done", 90.0)
    assert doc["job_key"] == "5" and doc["run_id"] == 2 and doc["return_code"] == 3
    assert doc["exec_time_minutes"] == 1.5 and doc["status"] == "done"

    class P:
        returncode = -15

    class R:
        proc = P()
        stop_reason: str | None = None

    run: Any = R()
    assert status_and_code(run) == ("done", 143)
    for reason, expected in (
        ("terminated", ("terminated", 143)),
        ("canceled", ("canceled", 143)),
        ("out_of_memory", ("done", 137)),
        ("timeout", ("done", 124)),
    ):
        run.stop_reason = reason
        assert status_and_code(run) == expected
