"""Auto-tune extension routes: suggestions per resource-requirements group, apply on request."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.registry import operation
from hpcflow.autotune import service
from hpcflow.autotune.service import ApplyIn

bp = Blueprint("autotune", __name__)
_CHANGES = {"type": "array", "items": {"type": "object"}}


@operation(
    bp,
    "GET",
    "/workflows/{key}/auto_tune/suggestions",
    "get_auto_tune_suggestions",
    write=True,
    immediate=True,
    extension=True,
    response={
        "type": "object",
        "properties": {
            "mode": {"type": "string"},
            "min_samples": {"type": "integer"},
            "changes": _CHANGES,
            "groups": _CHANGES,
        },
    },
)
def get_auto_tune_suggestions(session: Session, key: str) -> dict[str, Any]:
    """Per group: samples, observed p95/max and the proposal (new stats are taken in first)."""
    return service.suggestions(session, key)


@operation(
    bp,
    "POST",
    "/workflows/{key}/auto_tune/apply",
    "apply_auto_tune",
    body=ApplyIn,
    body_required=False,
    write=True,
    immediate=True,
    extension=True,
    response={
        "type": "object",
        "properties": {
            "applied": _CHANGES,
            "unchanged_keys": {"type": "array"},
            "min_samples": {"type": "integer"},
        },
    },
)
def apply_auto_tune(session: Session, key: str, body: ApplyIn | None) -> dict[str, Any]:
    """Apply the proposals of the named groups (default: all with enough samples) now."""
    return service.apply(session, key, body)
