"""Post workflow events (failures, cancellations, resets) for people and for event queries."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from hpcflow.models import Event


def post_event(
    session: Session, workflow_id: int, category: str, message: str, **data: Any
) -> Event:
    """Add an event in the caller's transaction; timestamp in ms since the epoch like torc."""
    event = Event(
        workflow_id=workflow_id,
        timestamp=time.time() * 1000,
        category=category,
        data={"message": message, **data},
    )
    session.add(event)
    return event
