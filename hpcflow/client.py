"""Typed HTTP client for the hpcflow/torc API, shared by the runner and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

from hpcflow.errors import BadRequest, Conflict, HpcflowError, Invalid, NotFound, Unauthorized

_BY_STATUS: dict[int, type[HpcflowError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    422: Invalid,
}


class ServerUnreachable(HpcflowError):
    """The server did not answer (connection refused, timeout)."""

    status = 503


class Client:
    """Thin wrapper over requests: JSON in, JSON out, errors as HpcflowError subclasses."""

    def __init__(self, url: str, *, timeout: float = 30.0, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One request; raises the matching HpcflowError for a JSON error body."""
        try:
            resp = self.http.request(
                method, self.url + path, json=json, params=params, timeout=timeout or self.timeout
            )
        except requests.RequestException as exc:
            raise ServerUnreachable(f"{method} {self.url}{path}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                message = resp.json().get("errorMessage") or resp.text
            except ValueError:
                message = resp.text
            raise _BY_STATUS.get(resp.status_code, HpcflowError)(
                f"{method} {path} -> {resp.status_code}: {message}"
            )
        return resp.json() if resp.content else None

    def get(self, path: str, **params: Any) -> Any:
        """GET with query parameters (None values dropped)."""
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        """POST a JSON body."""
        return self.call("POST", path, json=body if body is not None else {}, params=params or None)

    def put(self, path: str, body: Any = None, **params: Any) -> Any:
        """PUT a JSON body."""
        return self.call("PUT", path, json=body if body is not None else {}, params=params or None)

    def delete(self, path: str) -> Any:
        """DELETE a document or collection."""
        return self.call("DELETE", path)

    def iter_items(self, path: str, page_size: int = 10_000, **params: Any) -> Iterator[Any]:
        """Every item of a list endpoint, page by page."""
        skip = 0
        while True:
            page = self.get(path, skip=skip, limit=page_size, **params)
            yield from page["items"]
            if not page["has_more"]:
                return
            skip += page["count"]
