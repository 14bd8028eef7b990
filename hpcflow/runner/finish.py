"""Finishing a run: its status and return code, output-file checks, the result, stats, events."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

from hpcflow.errors import Conflict, NotFound
from hpcflow.runner.processes import CANCELED, OUT_OF_MEMORY, TERMINATED, TIMEOUT, Run, return_code
from hpcflow.runner.remote import Remote

log = logging.getLogger(__name__)

OUT_OF_MEMORY_RC = 137  # what the kernel's OOM killer would leave: 128 + SIGKILL
TIMEOUT_RC = 124  # GNU timeout's convention
MISSING_OUTPUTS_RC = 1
FINISHED = ("done", "terminated", "canceled")
ACTIVE = ("submitted", "submitted_pending")


def status_and_code(run: Run) -> tuple[str, int]:
    """The job status and return code a finished run reports."""
    code = return_code(run.proc.returncode if run.proc.returncode is not None else -9)
    reason = run.stop_reason
    if reason == TERMINATED:
        return "terminated", code
    if reason == CANCELED:
        return "canceled", code
    if reason == OUT_OF_MEMORY:
        return "done", OUT_OF_MEMORY_RC
    if reason == TIMEOUT:
        return "done", TIMEOUT_RC
    return "done", code


def result_doc(key: str, run_id: int, code: int, status: str, seconds: float) -> dict[str, Any]:
    """torc's result_model."""
    return {
        "job_key": key,
        "run_id": run_id,
        "return_code": code,
        "exec_time_minutes": max(0.0, seconds) / 60.0,
        "completion_time": datetime.now(UTC).isoformat(),
        "status": status,
    }


class Finisher:
    """Reports finished runs to the server; keeps a cache of the workflow's file documents."""

    def __init__(self, remote: Remote, node_key: str, cwd: str | None = None) -> None:
        self.remote = remote
        self.node_key = node_key
        self.cwd = cwd
        self._files: dict[str, dict[str, Any]] | None = None

    def _file(self, ref: str) -> dict[str, Any]:
        key = ref.rpartition("/")[2]
        if self._files is None:
            self._files = {str(f["_key"]): f for f in self.remote.files()}
        if key not in self._files:
            self._files[key] = self.remote.get_file(key)
        return self._files[key]

    def outputs(self, job: dict[str, Any]) -> list[str]:
        """Record st_mtime of each declared output that exists; return the paths missing."""
        missing = []
        for ref in job.get("output_files") or []:
            doc = self._file(ref)
            path = doc["path"] if self.cwd is None else os.path.join(self.cwd, doc["path"])
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                missing.append(doc["path"])
                continue
            self._touch(doc, mtime)
        return missing

    def _touch(self, doc: dict[str, Any], mtime: float) -> None:
        key = str(doc["_key"])
        body = {
            "name": doc.get("name"),
            "path": doc["path"],
            "st_mtime": mtime,
            "_rev": doc.get("_rev"),
        }
        try:
            new = self.remote.put_file(key, body)
        except Conflict:  # someone else changed it: retry on the current revision
            fresh = self.remote.get_file(key)
            new = self.remote.put_file(key, {**body, "_rev": fresh.get("_rev")})
        assert self._files is not None
        self._files[key] = new

    def complete(
        self,
        key: str,
        rev: str,
        run_id: int,
        status: str,
        code: int,
        seconds: float,
        *,
        retried: bool = False,
    ) -> dict[str, Any] | None:
        """complete_job, recovering from a stale _rev (cancel) or a retried, applied request.

        `retried`: an earlier request carrying this result may have been applied.
        """
        for _ in range(3):
            result = result_doc(key, run_id, code, status, seconds)
            try:
                return self.remote.complete_job(key, status, rev, run_id, self.node_key, result)
            except Conflict as exc:
                retried = retried or self.remote.retried
                job = self.remote.get_job(key)
                if job["status"] == "canceled" and status != "canceled":
                    status = "canceled"  # the workflow was canceled while the job ran
                elif job["status"] in FINISHED and retried:
                    return job  # our first attempt went through before the connection broke
                elif job["status"] not in ACTIVE and job["status"] != "canceled":
                    log.warning("job %s: result dropped (%s)", key, exc)
                    return None
                rev = str(job["_rev"])
        log.warning("job %s: could not complete after retries", key)
        return None

    def event(self, kind: str, message: str, **data: Any) -> None:
        """Post a job event (out of memory, timeout, missing outputs, start failure)."""
        body = {
            "category": "job",
            "type": kind,
            "message": message,
            "timestamp": time.time() * 1000,
            "compute_node_key": self.node_key,
            **data,
        }
        try:
            self.remote.add("events", body)
        except (NotFound, Conflict) as exc:
            log.warning("could not post event %s: %s", kind, exc)

    def link(self, name: str, src: str, dst: str) -> None:
        """Add an edge; a missing endpoint or document only costs a warning."""
        try:
            self.remote.add_edge(name, src, dst)
        except (NotFound, Conflict) as exc:
            log.warning("could not add %s edge %s -> %s: %s", name, src, dst, exc)
