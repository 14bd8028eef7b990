"""The successors a runner may start itself: blocked jobs that wait only for jobs running here.

The server hints them in claim answers (engine/follow.py), each with the keys of the blockers it
still waits for; each claim tops the hints up to ASK, walking on from those the runner holds.
When the last of a hint's blockers exits 0 here, the job is returned to be started at once and
reported as a follow; the server then confirms it or refuses it (and the runner kills it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ASK = 64  # successors a runner keeps hints for: how far along a chain it may run ahead


class Successors:
    """Hinted jobs by key, with the blockers each still waits for."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[dict[str, Any], set[str]]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def keys(self) -> list[str]:
        """The hinted jobs not started yet (a claim sends them as `known`)."""
        return list(self._waiting)

    def add(
        self,
        hints: Iterable[dict[str, Any]],
        exited_ok: set[str],
        busy: set[str],
        local: set[str],
    ) -> list[dict[str, Any]]:
        """Take new hints (nearest first); returns those whose blockers have all exited 0 here.

        `exited_ok`: jobs that exited 0 here since the request was sent; `busy`: jobs started
        here already; `local`: jobs held here that a hint may wait for. A hint waiting for
        anything else (a hint dropped after a failure) is dropped too."""
        accepted = {*local, *self._waiting}
        ready = []
        for hint in hints:
            job = hint["job"]
            key = str(job["_key"])
            if key in self._waiting or key in busy:
                continue
            after = {str(k) for k in hint["after"]} - exited_ok
            if not after <= accepted:
                continue
            accepted.add(key)
            if after:
                self._waiting[key] = (job, after)
            else:
                ready.append(job)
        return ready

    def finished(self, key: str, ok: bool) -> list[dict[str, Any]]:
        """A job exited here; returns the successors it was the last blocker of. After a failure
        nothing is followed until the next answer (the server cancels or keeps the dependents)."""
        if not ok:
            self._waiting.clear()
            return []
        ready = []
        for waiter, (job, after) in list(self._waiting.items()):
            if key in after:
                after.discard(key)
                if not after:
                    del self._waiting[waiter]
                    ready.append(job)
        return ready

    def clear(self) -> None:
        """Forget every hint (the runner is stopping)."""
        self._waiting.clear()
