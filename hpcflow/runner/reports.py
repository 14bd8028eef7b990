"""What the runner tells the server: gathering starts, completions and releases into one report
(complete_jobs with a claim), and recovering the items the server refused one job at a time."""

from __future__ import annotations

import logging
from typing import Any

from hpcflow.errors import HpcflowError
from hpcflow.runner import processes as proc
from hpcflow.runner.finish import Finisher
from hpcflow.runner.follow import Successors
from hpcflow.runner.jobqueue import JobQueue
from hpcflow.runner.node import ComputeNode
from hpcflow.runner.remote import Remote, ServerGone
from hpcflow.runner.reporter import Reply, Reporter

log = logging.getLogger(__name__)
START_DELAY = 0.05  # seconds a start may wait for company before it is reported alone
COALESCE = 0.05  # seconds completions may gather while queued jobs keep every slot busy


class Reports:
    """Mixin of Runner (through Dispatch): the report in preparation and the one in flight."""

    remote: Remote
    reporter: Reporter
    node: ComputeNode
    finisher: Finisher
    run_id: int
    next_status: float
    _seen_ready: int
    queue: JobQueue
    successors: Successors
    follows: set[str]
    supervisor: proc.Supervisor
    # Gathered for the next report, by job key.
    to_start: dict[str, proc.Run]
    to_complete: dict[str, tuple[Any, dict[str, Any]]]  # (Run or Pending, status and result)
    to_release: dict[str, str]  # key -> rev
    starts_due: float  # monotonic time by which the gathered starts are reported
    completions_due: float
    peak_running: int
    # The report in flight.
    sent_start: dict[str, proc.Run]
    sent_complete: dict[str, tuple[Any, dict[str, Any]]]

    def _claim_request(self) -> dict[str, Any]:
        raise NotImplementedError

    def _mark_started(self, run: proc.Run) -> None:
        raise NotImplementedError

    def _follow(self, jobs: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _pending(self) -> bool:
        """Something waits to be reported."""
        return bool(self.to_start or self.to_complete or self.to_release)

    def _due(self, now: float) -> bool:
        """Something must be reported now. Releases at once; completions at once unless the
        queue still holds work for every slot (then they gather for COALESCE seconds, so one
        request carries many); starts alone only after START_DELAY (a short job's start
        travels with its completion)."""
        if self.to_release:
            return True
        if self.to_complete and (
            len(self.queue) < max(1, self.peak_running) or now >= self.completions_due
        ):
            return True
        return bool(self.to_start and now >= self.starts_due)

    def _next_due(self) -> float | None:
        """When gathered items become due by themselves (for the loop's wait)."""
        times = [
            t
            for t, items in (
                (self.starts_due, self.to_start),
                (self.completions_due, self.to_complete),
            )
            if items
        ]
        return min(times) if times else None

    def _report(self, *, claim: bool) -> None:
        """Hand everything gathered (and a claim) to the reporter thread."""
        follows = [k for k in self.to_start if k in self.follows]
        request = {
            "run_id": self.run_id,
            "compute_node_key": self.node.key,
            "start": [
                {"key": k, "rev": run.rev} for k, run in self.to_start.items() if k not in follows
            ],
            # A job started in this same report names its claimed rev in both places.
            "jobs": [
                {"key": k, "rev": holder.rev, **item}
                for k, (holder, item) in self.to_complete.items()
            ],
            "release": [{"key": k, "rev": rev} for k, rev in self.to_release.items()],
            "claim": self._claim_request() if claim else None,
        }
        if followed := [{"key": k, "rev": self.to_start[k].rev} for k in follows]:
            request["follow"] = followed
        self.sent_start, self.to_start = self.to_start, {}
        self.sent_complete, self.to_complete = self.to_complete, {}
        self.to_release = {}
        self.reporter.submit(request)

    def _handle(self, reply: Reply) -> int | None:
        """Apply a reply: new revs, refused items, claimed jobs; returns how many were claimed
        (None when the report asked for no claim)."""
        started, completed = self.sent_start, self.sent_complete
        self.sent_start, self.sent_complete = {}, {}
        request = reply.request
        if reply.error is not None:
            if isinstance(reply.error, ServerGone) or not isinstance(reply.error, HpcflowError):
                raise reply.error
            # Refused as a whole (e.g. a stale run_id after a restart): job by job instead.
            log.warning("report refused (%s); reporting job by job", reply.error)
            answer: dict[str, Any] = {
                "started": [],
                "errors": [
                    *({"_key": i["key"], "operation": "start"} for i in request["start"]),
                    *({"_key": i["key"], "operation": "follow"} for i in request.get("follow", [])),
                    *({"_key": i["key"], "operation": "complete"} for i in request["jobs"]),
                    *({"_key": i["key"], "operation": "release"} for i in request["release"]),
                ],
                "jobs": [],
                "reason": "",
            }
        else:
            assert reply.answer is not None
            answer = reply.answer
        for item in answer.get("started") or []:
            if (run := started.get(item["_key"])) is not None:
                run.rev = item["_rev"]
        self.follows.difference_update(started)
        abandoned = set()
        for error in answer.get("errors") or []:
            key, operation = error["_key"], error["operation"]
            if operation == "follow" and key in started:
                if not self._recover_follow(started[key], reply.retried, error.get("message")):
                    abandoned.add(key)
            elif operation == "start" and key in started:
                if not self._recover_start(started[key], reply.retried):
                    abandoned.add(key)
            elif operation == "complete" and key in completed and key not in abandoned:
                self._recover_completion(*completed[key], retried=reply.retried)
            elif operation == "release":
                log.info("job %s not released: %s", key, error.get("message"))
        if request.get("claim") is None:
            return None
        jobs = answer.get("jobs") or []
        self.queue.extend(jobs)
        if "successors" in answer:
            self._follow(self._add_successors(answer["successors"]))
        # Jobs that will start soon: their output files are made ahead (outputs.py). Those
        # that start at once take no file made ahead, at no cost.
        waiting = set(self.successors.keys())
        hinted = (str(h["job"]["_key"]) for h in answer.get("successors") or [])
        keys = [*(str(j["_key"]) for j in jobs), *(k for k in hinted if k in waiting)]
        self.supervisor.prepare(keys, self.run_id)
        if jobs:
            self._seen_ready = 0
        elif "canceled" in (answer.get("reason") or ""):
            self.next_status = 0.0  # look at the workflow status right away
        return len(jobs)

    def _add_successors(self, hints: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add the answer's successor hints; returns those whose blockers exited 0 meanwhile."""
        exited_ok = {
            k
            for k, (_, item) in self.to_complete.items()
            if item["status"] == "done" and item["result"]["return_code"] == 0
        }
        busy = {*self.supervisor.running, *self.to_start, *self.to_complete}
        local = {*busy, *(str(j["_key"]) for j in self.queue)}
        return self.successors.add(hints, exited_ok, busy, local)

    def _recover_follow(self, run: proc.Run, retried: bool, why: str | None) -> bool:
        """A refused follow: kept when a retried first attempt went through, else killed (its
        result forgotten); False when killed."""
        if retried:
            job = self.remote.get_job(run.key)
            if job["status"] == "submitted":  # our first attempt went through
                run.rev = str(job["_rev"])
                return True
        log.warning("job %s was started as a successor but refused (%s); killing it", run.key, why)
        run.stop(proc.ABANDONED, 0)
        self.to_complete.pop(run.key, None)
        self.successors.clear()
        return False

    def _recover_start(self, run: proc.Run, retried: bool) -> bool:
        """A refused start, resolved by itself; False when the job was given up (killed)."""
        if retried:
            job = self.remote.get_job(run.key)
            if job["status"] == "submitted":  # our first attempt went through
                run.rev = str(job["_rev"])
                return True
        self._mark_started(run)
        return run.stop_reason != proc.ABANDONED

    def _recover_completion(self, holder: Any, item: dict[str, Any], *, retried: bool) -> None:
        """A refused completion, resolved the single-job way (canceled, stale rev, applied)."""
        result = item["result"]
        try:
            self.finisher.complete(
                result["job_key"],
                holder.rev,
                result["run_id"],
                item["status"],
                result["return_code"],
                result["exec_time_minutes"] * 60,
                retried=retried,
            )
        except ServerGone:
            raise
        except HpcflowError as exc:  # the server refused the result: say so and go on
            log.error("job %s: complete_job refused: %s", result["job_key"], exc)

    def _release_queue(self) -> None:
        """Give the queued, unstarted jobs back (the runner is stopping)."""
        while self.queue:
            job = self.queue.popleft()
            self.to_release[str(job["_key"])] = str(job["_rev"])

    def _drain(self) -> None:
        """Deliver everything still to report (no more claims), waiting for each reply."""
        while True:
            if self.reporter.busy:
                reply = self.reporter.wait()
                if reply is not None:
                    self._handle(reply)
                continue
            self._release_queue()
            if not self._pending():
                return
            self._report(claim=False)
