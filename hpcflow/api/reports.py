"""Report extension routes: utilization per resource-requirements group, results per attempt."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.common import SKIP_LIMIT, envelope, page
from hpcflow.api.registry import Q, operation
from hpcflow.engine import reports

bp = Blueprint("reports", __name__)
RUN = Q("run_id", int, None, "The run to report (default: the workflow's current run)")
_NUMBERS = {"type": "object", "additionalProperties": {"type": "number"}}


@operation(
    bp,
    "GET",
    "/workflows/{key}/reports/utilization",
    "get_utilization_report",
    query=(RUN,),
    extension=True,
    response={
        "type": "object",
        "properties": {
            "workflow_key": {"type": "string"},
            "run_id": {"type": "integer"},
            "groups": {"type": "array", "items": {"type": "object"}},
            "totals": {
                "type": "object",
                "properties": {
                    "num_runs": {"type": "integer"},
                    "core_hours": _NUMBERS,
                    "gb_hours": _NUMBERS,
                },
            },
        },
    },
)
def get_utilization_report(session: Session, key: str, run_id: int | None) -> dict[str, Any]:
    """Per group: requested vs observed use (p50, p95, max) and waste in core- and GB-hours."""
    return reports.utilization(session, key, run_id)


@operation(
    bp,
    "GET",
    "/workflows/{key}/reports/results",
    "get_results_report",
    query=(RUN, *SKIP_LIMIT),
    extension=True,
    response={
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object"}},
            "total_count": {"type": "integer"},
            "has_more": {"type": "boolean"},
        },
    },
)
def get_results_report(
    session: Session, key: str, run_id: int | None, skip: float, limit: float | None
) -> dict[str, Any]:
    """Every attempt of every job: status, return code, runtime, peak memory and node."""
    first, size = page(skip, limit)
    rows, total = reports.results(session, key, run_id, first, size)
    return envelope(rows, first, total)
