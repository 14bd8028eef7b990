"""Service-level routes: ping, version, the OpenAPI document and its reference page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template_string
from sqlalchemy import text
from sqlalchemy.orm import Session

from hpcflow import API_VERSION, __version__
from hpcflow.api.openapi import build_spec
from hpcflow.api.registry import OPERATIONS, operation

bp = Blueprint("meta", __name__)

REFERENCE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hpcflow API reference</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;
text-align:left;vertical-align:top}code{font-size:.9em}.m{font-weight:600;width:5rem}
.ext{color:#a05a00;font-size:.8em}h2{margin-top:2rem}
</style></head><body>
<h1>hpcflow API reference</h1>
<p>Version {{ version }}; wire-compatible with torc {{ api }}.
{{ ops|length }} operations. Machine-readable: <a href="openapi.json">openapi.json</a>.</p>
{% for tag, group in groups %}<h2 id="{{ tag }}">{{ tag }}</h2><table>
<tr><th>Method</th><th>Path</th><th>Operation</th><th>Summary</th></tr>
{% for op in group %}<tr><td class="m">{{ op.method }}</td><td><code>{{ op.path }}</code></td>
<td><code>{{ op.operation_id }}</code>{% if op.extension %} <span class="ext">extension</span>
{% endif %}</td><td>{{ op.summary }}</td></tr>{% endfor %}</table>{% endfor %}
</body></html>"""


@operation(bp, "GET", "/ping", "ping", summary="Check whether the service and database are up.")
def ping(session: Session) -> dict[str, Any]:
    """Check whether the service and its database answer."""
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


@operation(bp, "GET", "/version", "get_version", summary="Return the version of the service.")
def version(session: Session) -> Any:
    """Return the version of the service."""
    return {"version": __version__, "api_version": API_VERSION}


@bp.get("/openapi.json")
def openapi() -> Any:
    """The OpenAPI document generated from the registered operations."""
    return build_spec(current_app.extensions["hpcflow"].settings.url_prefix)


@bp.get("/docs")
def reference() -> Response:
    """A readable reference page of every operation."""
    groups: dict[str, list[Any]] = {}
    for op in sorted(OPERATIONS, key=lambda o: (o.tag, o.path, o.method)):
        groups.setdefault(op.tag, []).append(op)
    html = render_template_string(
        REFERENCE_PAGE,
        version=__version__,
        api=API_VERSION,
        ops=OPERATIONS,
        groups=sorted(groups.items()),
    )
    return Response(html, mimetype="text/html")
