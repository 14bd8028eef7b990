"""The runner's lookahead queue: claimed jobs waiting for room, with what they need in total.

The loop asks "what is free once the queue is set aside" several times per pass, with hundreds
of short jobs queued; keeping the sums as jobs come and go makes that O(1) instead of a walk.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

Need = tuple[int, int, int]  # CPUs, GPUs, memory bytes


def need_of(job: dict[str, Any]) -> Need:
    """What one claimed job needs, from its internal resource fields."""
    need = job.get("internal") or {}
    return (
        int(need.get("num_cpus") or 0),
        int(need.get("num_gpus") or 0),
        int(need.get("memory_bytes") or 0),
    )


class JobQueue:
    """Claimed, unstarted jobs in claim order; `cpus`, `gpus`, `memory` are their sums."""

    def __init__(self) -> None:
        self._items: deque[tuple[dict[str, Any], Need]] = deque()
        self.cpus = self.gpus = self.memory = 0
        self._cpuless = 0  # jobs that need no CPU (they may start on a node with none free)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (job for job, _need in self._items)

    def extend(self, jobs: Iterable[dict[str, Any]]) -> None:
        """Queue claimed jobs at the end."""
        for job in jobs:
            need = need_of(job)
            self._items.append((job, need))
            self._add(need, +1)

    def popleft(self) -> dict[str, Any]:
        """The oldest queued job, removed."""
        job, need = self._items.popleft()
        self._add(need, -1)
        return job

    def clear(self) -> None:
        """Forget every queued job."""
        self._items.clear()
        self.cpus = self.gpus = self.memory = self._cpuless = 0

    def take_fitting(
        self, cpus: int, gpus: int, memory: int, room: int | None
    ) -> list[dict[str, Any]]:
        """Remove and return, first fit in queue order, the jobs that fit in what is free.

        `room` caps the number of jobs (None: no cap). The walk stops as soon as nothing left
        could fit, so a full node costs nothing however long the queue is.
        """
        taken: list[dict[str, Any]] = []
        skipped: list[tuple[dict[str, Any], Need]] = []
        items = self._items
        while items and room != 0 and (cpus > 0 or self._cpuless):
            job, need = items.popleft()
            c, g, m = need
            if c <= cpus and g <= gpus and m <= memory:
                self._add(need, -1)
                taken.append(job)
                cpus, gpus, memory = cpus - c, gpus - g, memory - m
                room = None if room is None else room - 1
            else:
                skipped.append((job, need))
        items.extendleft(reversed(skipped))
        return taken

    def _add(self, need: Need, sign: int) -> None:
        c, g, m = need
        self.cpus += sign * c
        self.gpus += sign * g
        self.memory += sign * m
        if c == 0:
            self._cpuless += sign
