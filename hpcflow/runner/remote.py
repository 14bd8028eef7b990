"""The runner's view of the server: the torc calls it makes, retried with backoff when down."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hpcflow.client import Client, ServerUnreachable
from hpcflow.errors import HpcflowError, NotFound

log = logging.getLogger(__name__)
T = TypeVar("T")


class ServerGone(HpcflowError):
    """The server stayed unreachable for longer than the runner may wait."""

    status = 503


def _transient(exc: HpcflowError) -> bool:
    """Unreachable or a 5xx: worth retrying. 4xx answers are final."""
    return isinstance(exc, ServerUnreachable) or type(exc) is HpcflowError


class Remote:
    """Every request the runner makes, each retried until `retry_seconds` have passed."""

    def __init__(
        self,
        client: Client,
        workflow_key: str,
        *,
        retry_seconds: float = 600.0,
        should_abort: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.wf = workflow_key
        self.retry_seconds = retry_seconds
        self.should_abort = should_abort
        self.sleep = sleep
        # Set when a request had to be retried: the server may have applied the first attempt.
        self.retried = False

    def call(self, fn: Callable[[], T]) -> T:
        """Run fn; on a transient failure retry with exponential backoff, then raise ServerGone."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        self.retried = False
        while True:
            try:
                return fn()
            except HpcflowError as exc:
                if not _transient(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0 or self.should_abort():
                    raise ServerGone(
                        f"server {self.client.url} unreachable for {self.retry_seconds:.0f} s; "
                        f"last error: {exc}"
                    ) from exc
                log.warning("server problem (%s); retrying in %.2f s", exc, min(delay, left))
                self.sleep(min(delay, left))
                delay = min(delay * 2, 5.0)
                self.retried = True

    def _p(self, path: str) -> str:
        return f"/workflows/{self.wf}{path}"

    # workflow-level documents
    def status(self) -> dict[str, Any]:
        """The workflow status (run_id, is_canceled)."""
        return self.call(lambda: self.client.get(self._p("/status")))

    def config(self) -> dict[str, Any]:
        """The workflow config (limits, sort method, buffers)."""
        return self.call(lambda: self.client.get(self._p("/config")))

    def is_complete(self) -> dict[str, Any]:
        """is_complete / is_canceled / needs_to_run_completion_script."""
        return self.call(lambda: self.client.get(self._p("/is_complete")))

    # compute node
    def add_node(self, body: dict[str, Any]) -> dict[str, Any]:
        """Register this runner as a compute node."""
        return self.call(lambda: self.client.post(self._p("/compute_nodes"), body))

    def put_node(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the compute node document (heartbeat, inactive)."""
        return self.call(lambda: self.client.put(self._p(f"/compute_nodes/{key}"), body))

    def get_node(self, key: str) -> dict[str, Any]:
        """The current compute node document."""
        return self.call(lambda: self.client.get(self._p(f"/compute_nodes/{key}")))

    # jobs
    def claim(
        self, resources: dict[str, Any], sort_method: str, limit: int | None, node_key: str
    ) -> dict[str, Any]:
        """Claim ready jobs that fit `resources` for this node."""
        params: dict[str, Any] = {"sort_method": sort_method, "compute_node_key": node_key}
        if limit is not None:
            params["limit"] = limit
        return self.call(
            lambda: self.client.post(
                f"/workflows/{self.wf}/prepare_jobs_for_submission", resources, **params
            )
        )

    def start_job(self, key: str, rev: str, run_id: int, node_key: str) -> dict[str, Any]:
        """submitted_pending -> submitted."""
        return self.call(
            lambda: self.client.put(self._p(f"/jobs/{key}/start_job/{rev}/{run_id}/{node_key}"))
        )

    def complete_job(
        self, key: str, status: str, rev: str, run_id: int, node_key: str, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Finish a job with its result."""
        return self.call(
            lambda: self.client.post(
                self._p(f"/jobs/{key}/complete_job/{status}/{rev}/{run_id}/{node_key}"), result
            )
        )

    def complete_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        """Starts, completions and releases in one request, then a claim (batch extension)."""
        return self.call(lambda: self.client.post(self._p("/complete_jobs"), body))

    def has_batch(self, run_id: int, node_key: str) -> bool:
        """True when the server offers the batch operations (an empty start_jobs succeeds)."""
        body = {"run_id": run_id, "compute_node_key": node_key, "jobs": []}

        def probe() -> bool:
            try:
                self.client.put(self._p("/start_jobs"), body)
            except NotFound:
                return False
            except HpcflowError as exc:
                if "-> 405" in str(exc):  # the path exists for other methods only
                    return False
                raise
            return True

        return self.call(probe)

    def release_job(self, key: str, rev: str, run_id: int) -> dict[str, Any]:
        """A claimed, unstarted job back to ready (torc's manage_status_change)."""
        return self.call(
            lambda: self.client.put(
                self._p(f"/jobs/{key}/manage_status_change/ready/{rev}/{run_id}")
            )
        )

    def get_job(self, key: str) -> dict[str, Any]:
        """One job document."""
        return self.call(lambda: self.client.get(self._p(f"/jobs/{key}")))

    # files, stats, events, logs
    def files(self) -> list[dict[str, Any]]:
        """Every file document of the workflow."""
        return self.call(lambda: list(self.client.iter_items(self._p("/files"))))

    def get_file(self, key: str) -> dict[str, Any]:
        """One file document."""
        return self.call(lambda: self.client.get(self._p(f"/files/{key}")))

    def put_file(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace a file document (its st_mtime)."""
        return self.call(lambda: self.client.put(self._p(f"/files/{key}"), body))

    def add(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        """Add a document to a collection (job_process_stats, compute_node_stats, events)."""
        return self.call(lambda: self.client.post(self._p(f"/{collection}"), body))

    def add_edge(self, name: str, src: str, dst: str) -> dict[str, Any]:
        """Link two documents (process_used, node_used)."""
        return self.call(
            lambda: self.client.post(self._p(f"/edges/{name}"), {"_from": src, "_to": dst})
        )

    def wait_for_ready(self, timeout: float, ready_count: int) -> dict[str, Any] | None:
        """Long poll until claimable jobs change (extension); None when the server lacks it."""
        try:
            return self.call(
                lambda: self.client.call(
                    "GET",
                    f"/workflows/{self.wf}/wait_for_ready",
                    params={"timeout": round(timeout, 3), "ready_count": ready_count},
                    timeout=timeout + self.client.timeout,
                )
            )
        except NotFound:
            return None

    def upload_process_stats(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Store many job_process_stats with their process_used edges (extension endpoint)."""
        return self.call(
            lambda: self.client.post(self._p("/bulk_job_process_stats"), {"stats": items})
        )

    def upload_logs(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Store many job logs (extension endpoint)."""
        return self.call(lambda: self.client.post(self._p("/bulk_job_logs"), {"logs": items}))
