"""The one door for identity: every request is attributed to a caller here, never in routes.

With no tokens configured the server is open and every caller is "anonymous" (torc 0.6.4 has no
authentication). With `api_tokens` or `node_token` set, a bearer token is required on every
route except the health and documentation pages.
"""

from __future__ import annotations

import hmac

from flask import Flask, g, request

from hpcflow.config import Settings
from hpcflow.errors import Unauthorized

PUBLIC = frozenset({"meta.ping", "meta.get_version", "meta.openapi", "meta.reference"})


def tokens(settings: Settings) -> dict[str, str]:
    """Accepted tokens by caller name."""
    found = dict(settings.api_tokens)
    if settings.node_token:
        found["node"] = settings.node_token
    return found


def caller_for(header: str | None, accepted: dict[str, str]) -> str:
    """The caller a request's Authorization header names; Unauthorized when it names none."""
    if not accepted:
        return "anonymous"
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() == "bearer" and given:
        for name, token in accepted.items():
            # Constant-time comparison: response timing must not reveal a token's prefix.
            if hmac.compare_digest(given.encode(), token.encode()):
                return name
    raise Unauthorized(
        "this server requires a bearer token (Authorization: Bearer <token>)", field="Authorization"
    )


def install(app: Flask, settings: Settings) -> None:
    """Attribute every request to a caller before any route runs."""
    accepted = tokens(settings)

    @app.before_request
    def _identify() -> None:
        if request.endpoint in PUBLIC:
            g.caller = "anonymous"
            return
        g.caller = caller_for(request.headers.get("Authorization"), accepted)
