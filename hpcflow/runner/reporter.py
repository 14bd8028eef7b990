"""The runner's reports to the server, in flight while the loop keeps launching jobs.

One request is in flight at a time: starts, completions and releases gathered since the last
one, plus a claim for what is free. The request is written to a keep-alive connection and the
loop goes on; the connection's socket sits in the supervisor's select beside the jobs' pidfds,
so the answer is read the moment it arrives, on the loop's own thread. (A reporting thread
would fight the loop for the GIL: every fork and exit notice then waits behind JSON work.)
Any trouble on that connection (refused, reset, a 5xx) falls back to the same request through
Remote, with its retries. A server without the batch operations gets single-job calls.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hpcflow.client import _BY_STATUS
from hpcflow.errors import Conflict, HpcflowError, NotFound
from hpcflow.runner.processes import Supervisor
from hpcflow.runner.remote import Remote

log = logging.getLogger(__name__)


@dataclass
class Reply:
    """The answer to one request, or the error that ended it; `retried` as in Remote."""

    request: dict[str, Any]
    answer: dict[str, Any] | None
    error: BaseException | None
    retried: bool


class Reporter:
    """Sends one report at a time without blocking the loop; the supervisor wakes on replies."""

    def __init__(self, remote: Remote, supervisor: Supervisor, *, batch: bool = True) -> None:
        self.remote = remote
        self.supervisor = supervisor
        self.batch = batch
        parts = urlsplit(remote.client.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._path = f"{parts.path.rstrip('/')}/workflows/{remote.wf}/complete_jobs"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        auth = remote.client.http.headers.get("Authorization")
        if auth:
            self._headers["Authorization"] = str(auth)
        self._conn: http.client.HTTPConnection | None = None
        self._sent: dict[str, Any] | None = None
        self._reply: Reply | None = None

    @property
    def busy(self) -> bool:
        """A request is in flight or its reply has not been taken yet."""
        return self._sent is not None or self._reply is not None

    def submit(self, request: dict[str, Any]) -> None:
        """Send a request (only when not busy: the next one depends on this one's reply)."""
        if self.busy:
            raise RuntimeError("a report is already in flight")
        if not self.batch:
            self._reply = self._blocking(request, self._one_by_one)
            return
        body = json.dumps(request).encode()
        try:
            conn = self._connection()
            conn.request("POST", self._path, body, self._headers)
        except (OSError, http.client.HTTPException):
            self._close()
            self._reply = self._blocking(request, self.remote.complete_jobs)
            return
        self._sent = request
        assert conn.sock is not None
        self.supervisor.watch(conn.sock, self._receive)

    def take(self) -> Reply | None:
        """The reply of the last request, once it has arrived."""
        reply, self._reply = self._reply, None
        return reply

    def wait(self) -> Reply | None:
        """Block until the request in flight is answered, then take its reply."""
        if self._sent is not None:
            self._receive()
        return self.take()

    def stop(self) -> None:
        """Drop the connection (a request still in flight is abandoned)."""
        self._close()
        self._sent = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = kind(self._host, self._port, timeout=self.remote.client.timeout)
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            if self._conn.sock is not None:
                self.supervisor.unwatch(self._conn.sock)
            self._conn.close()
            self._conn = None

    def _receive(self) -> None:
        """Read the answer of the request in flight (its socket is readable)."""
        request, conn = self._sent, self._conn
        assert request is not None and conn is not None
        self._sent = None
        if conn.sock is not None:
            self.supervisor.unwatch(conn.sock)
        try:
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            # The server may have applied it before the connection broke: say so.
            self._close()
            reply = self._blocking(request, self.remote.complete_jobs)
            self._reply = Reply(request, reply.answer, reply.error, True)
            return
        if resp.status < 400:
            self._reply = Reply(request, json.loads(data) if data else {}, None, False)
        elif resp.status >= 500:
            self._close()
            self._reply = self._blocking(request, self.remote.complete_jobs)
        else:
            try:
                message = json.loads(data).get("errorMessage") or data.decode()
            except ValueError:
                message = data.decode(errors="replace")
            error = _BY_STATUS.get(resp.status, HpcflowError)(
                f"POST {self._path} -> {resp.status}: {message}"
            )
            self._reply = Reply(request, None, error, False)

    def _blocking(self, request: dict[str, Any], send: Any) -> Reply:
        """The request through Remote (retried while the server is down), as a Reply."""
        try:
            return Reply(request, send(request), None, self.remote.retried)
        except BaseException as exc:  # handed to the loop, which decides
            return Reply(request, None, exc, self.remote.retried)

    def _one_by_one(self, request: dict[str, Any]) -> dict[str, Any]:
        """The batch request as single-job calls, answered in the batch format."""
        out: dict[str, Any] = {
            "started": [],
            "completed": [],
            "released": [],
            "errors": [],
            "jobs": [],
            "reason": "",
        }
        run_id, node = request["run_id"], request["compute_node_key"]
        revs: dict[str, str] = {}
        for item in request["start"]:
            try:
                doc = self.remote.start_job(item["key"], item["rev"], run_id, node)
            except (Conflict, NotFound) as exc:
                out["errors"].append(_error(item["key"], "start", exc))
                continue
            revs[item["key"]] = str(doc["_rev"])
            out["started"].append(_item(doc))
        for item in request["jobs"]:
            rev = revs.get(item["key"], item["rev"])
            try:
                doc = self.remote.complete_job(
                    item["key"], item["status"], rev, run_id, node, item["result"]
                )
            except (Conflict, NotFound) as exc:
                out["errors"].append(_error(item["key"], "complete", exc))
                continue
            out["completed"].append(_item(doc))
        for item in request["release"]:
            try:
                out["released"].append(
                    _item(self.remote.release_job(item["key"], item["rev"], run_id))
                )
            except (Conflict, NotFound) as exc:
                out["errors"].append(_error(item["key"], "release", exc))
        claim = request.get("claim")
        if claim:
            answer = self.remote.claim(
                claim["resources"], claim["sort_method"], claim["limit"], node
            )
            out["jobs"], out["reason"] = answer.get("jobs") or [], answer.get("reason") or ""
        return out


def _item(doc: dict[str, Any]) -> dict[str, Any]:
    return {"_key": str(doc["_key"]), "_rev": str(doc["_rev"]), "status": doc["status"]}


def _error(key: str, operation: str, exc: HpcflowError) -> dict[str, Any]:
    return {"_key": key, "operation": operation, "code": exc.status, "message": str(exc)}
