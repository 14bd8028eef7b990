"""Autoscaler extension routes: pause and resume a scheduler config."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.registry import operation
from hpcflow.autoscale.guards import set_paused

bp = Blueprint("scaling", __name__)
_PATH = "/workflows/{workflow}/schedulers/{collection}/{key}"


@operation(
    bp, "POST", _PATH + "/pause", "pause_scheduler", write=True, immediate=True, extension=True
)
def pause_scheduler(session: Session, workflow: str, collection: str, key: str) -> dict[str, Any]:
    """Stop the autoscaler launching nodes of this scheduler config."""
    return set_paused(session, workflow, collection, key, True)


@operation(
    bp, "POST", _PATH + "/resume", "resume_scheduler", write=True, immediate=True, extension=True
)
def resume_scheduler(session: Session, workflow: str, collection: str, key: str) -> dict[str, Any]:
    """Let the autoscaler launch nodes of this config again; clears its failure streak."""
    return set_paused(session, workflow, collection, key, False)
