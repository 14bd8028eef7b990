"""Questions about a workflow's graph: what a job uses, what follows it, events, joins, DOT."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import RootModel
from sqlalchemy.orm import Session

from hpcflow.api.common import SKIP_LIMIT, envelope, page
from hpcflow.api.registry import Q, operation, parse_scalar
from hpcflow.engine import graph_views, queries
from hpcflow.errors import Invalid
from hpcflow.models.data import UserDataIn

bp = Blueprint("queries", __name__)
WF = "/workflows/{workflow}"
JOB = WF + "/jobs/{key}"
_EDGE = {"type": "object", "description": "edge_model"}


class JoinFilters(RootModel[dict[str, Any]]):
    """Equality filters on the starting collection's fields, e.g. {"status": "done"}."""


@operation(
    bp, "GET", WF + "/files/produced_by_job/{key}", "list_files_produced_by_job", query=SKIP_LIMIT
)
def list_files_produced_by_job(
    session: Session, workflow: str, key: str, skip: float, limit: float | None
) -> dict[str, Any]:
    """Retrieve the files a job produces."""
    first, size = page(skip, limit)
    return envelope(
        *_paged(queries.files_produced_by_job(session, workflow, key, first, size), first)
    )


@operation(bp, "GET", WF + "/job_specifications", "list_job_specifications", query=SKIP_LIMIT)
def list_job_specifications(
    session: Session, workflow: str, skip: float, limit: float | None
) -> dict[str, Any]:
    """Retrieve jobs as specifications: references by name instead of _id."""
    first, size = page(skip, limit)
    return envelope(*_paged(queries.job_specification_page(session, workflow, first, size), first))


@operation(bp, "GET", WF + "/job_specifications/{key}", "get_job_specification")
def get_job_specification(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """Retrieve one job as a specification."""
    return queries.job_specification(session, workflow, key)


@operation(bp, "GET", WF + "/job_keys", "list_job_keys")
def list_job_keys(session: Session, workflow: str) -> dict[str, Any]:
    """Retrieve every job key of a workflow."""
    return queries.job_keys(session, workflow)


@operation(bp, "GET", WF + "/jobs/find_by_status/{status}", "list_jobs_by_status", query=SKIP_LIMIT)
def list_jobs_by_status(
    session: Session, workflow: str, status: str, skip: float, limit: float | None
) -> dict[str, Any]:
    """Retrieve the jobs with one status."""
    first, size = page(skip, limit)
    return envelope(*_paged(queries.jobs_by_status(session, workflow, status, first, size), first))


@operation(
    bp, "GET", WF + "/jobs/find_by_needs_file/{key}", "list_jobs_by_needs_file", query=SKIP_LIMIT
)
def list_jobs_by_needs_file(
    session: Session, workflow: str, key: str, skip: float, limit: float | None
) -> dict[str, Any]:
    """Retrieve the jobs that need a file."""
    first, size = page(skip, limit)
    return envelope(*_paged(queries.jobs_needing_file(session, workflow, key, first, size), first))


@operation(bp, "GET", WF + "/downstream_jobs/{key}", "list_downstream_jobs", query=SKIP_LIMIT)
def list_downstream_jobs(
    session: Session, workflow: str, key: str, skip: float, limit: float | None
) -> dict[str, Any]:
    """Retrieve every job downstream of a job (over blocks edges)."""
    first, size = page(skip, limit)
    return envelope(*_paged(queries.downstream_jobs(session, workflow, key, first, size), first))


@operation(bp, "GET", JOB + "/resource_requirements", "get_job_resource_requirements")
def get_job_resource_requirements(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """Retrieve the resource requirements of a job (404 when it has none)."""
    return queries.job_resource_requirements(session, workflow, key)


@operation(
    bp,
    "PUT",
    JOB + "/resource_requirements/{rr_key}",
    "modify_job_resource_requirements",
    write=True,
    immediate=True,
    response=_EDGE,
)
def modify_job_resource_requirements(
    session: Session, workflow: str, key: str, rr_key: str
) -> dict[str, Any]:
    """Set the resource requirements of a job, replacing any; returns the requires edge."""
    return queries.set_job_resource_requirements(session, workflow, key, rr_key)


@operation(
    bp,
    "GET",
    JOB + "/process_stats",
    "get_process_stats_for_job",
    response={"type": "array", "items": {"type": "object"}},
)
def get_process_stats_for_job(session: Session, workflow: str, key: str) -> Any:
    """Retrieve a job's process stats, one document per run."""
    return queries.job_process_stats(session, workflow, key)


@operation(bp, "POST", JOB + "/user_data", "add_job_user_data", body=UserDataIn, write=True)
def add_job_user_data(
    session: Session, workflow: str, key: str, body: UserDataIn
) -> dict[str, Any]:
    """Store user data for a job and connect the two with a stores edge."""
    return queries.add_job_user_data(session, workflow, key, body)


@operation(bp, "GET", JOB + "/user_data_stores", "list_job_user_data_stores")
def list_job_user_data_stores(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """Retrieve all user data a job stores."""
    return envelope(*_paged(queries.user_data_of_job(session, workflow, key, "stores"), 0))


@operation(bp, "GET", JOB + "/user_data_consumes", "list_job_user_data_consumes")
def list_job_user_data_consumes(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """Retrieve all user data a job consumes."""
    return envelope(*_paged(queries.user_data_of_job(session, workflow, key, "consumes"), 0))


@operation(bp, "GET", WF + "/results/find_by_job/{key}", "get_latest_job_result")
def get_latest_job_result(session: Session, workflow: str, key: str) -> dict[str, Any]:
    """Retrieve the latest result of a job (404 when it has none)."""
    return queries.latest_result(session, workflow, key)


@operation(bp, "GET", "/workflows/{key}/collection_names", "list_collection_names")
def list_collection_names(session: Session, key: str) -> dict[str, Any]:
    """Retrieve the names of a workflow's document and edge collections."""
    return graph_views.collection_names(session, key)


def _join(inbound: bool) -> Any:
    direction = "inbound" if inbound else "outbound"

    @operation(
        bp,
        "POST",
        f"/workflows/{{key}}/join_by_{direction}_edge/{{collection}}/{{edge}}",
        f"join_collections_by_{direction}_edge",
        body=JoinFilters,
        query=(
            Q("collection_key", str, None, "Only the document with this key"),
            Q("collection_name", str, None, "Only documents with this name"),
            *SKIP_LIMIT,
        ),
        summary=f"Retrieve a table of the collections joined by an {direction} edge.",
    )
    def view(
        session: Session,
        key: str,
        collection: str,
        edge: str,
        body: JoinFilters,
        collection_key: str | None,
        collection_name: str | None,
        skip: float,
        limit: float | None,
    ) -> dict[str, Any]:
        first, size = page(skip, limit)
        filters = dict(body.root)
        if collection_key is not None:
            filters["_key"] = collection_key
        if collection_name is not None:
            filters["name"] = collection_name
        return envelope(
            *_paged(
                graph_views.join(
                    session,
                    key,
                    collection,
                    edge,
                    inbound=inbound,
                    filters=filters,
                    skip=first,
                    limit=size,
                ),
                first,
            )
        )

    return view


join_collections_by_inbound_edge = _join(inbound=True)
join_collections_by_outbound_edge = _join(inbound=False)


@operation(
    bp,
    "GET",
    "/workflows/{key}/job_counts",
    "get_job_counts",
    extension=True,
    response={
        "type": "object",
        "properties": {
            "workflow_key": {"type": "string"},
            "total": {"type": "integer"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
)
def get_job_counts(session: Session, key: str) -> dict[str, Any]:
    """Count the workflow's jobs in each status (one request for a progress display)."""
    return queries.job_counts(session, key)


@operation(
    bp,
    "GET",
    "/workflows/{key}/latest_event_timestamp",
    "get_latest_event_timestamp",
    response={"type": "object", "properties": {"timestamp": {"type": "number"}}},
)
def get_latest_event_timestamp(session: Session, key: str) -> dict[str, Any]:
    """Return the newest event's timestamp in ms since the epoch (0 without events)."""
    return queries.latest_event_timestamp(session, key)


@operation(
    bp,
    "GET",
    "/workflows/{key}/events_after_timestamp/{timestamp}",
    "get_events_after_timestamp",
    query=(
        Q("category", str, None, "Only events of this category"),
        Q("skip", float, 0, "Ignored"),
        SKIP_LIMIT[1],
    ),
)
def get_events_after_timestamp(
    session: Session,
    key: str,
    timestamp: str,
    category: str | None,
    skip: float,
    limit: float | None,
) -> dict[str, Any]:
    """Return the events newer than a timestamp (ms since the epoch), oldest first."""
    after = parse_scalar(timestamp, float, "timestamp")
    if after != after or after in (float("inf"), float("-inf")):
        raise Invalid(f"timestamp must be a finite number, got {timestamp!r}", field="timestamp")
    _first, size = page(0, limit)
    return envelope(*_paged(queries.events_after(session, key, after, category, size), 0))


@operation(
    bp,
    "GET",
    "/workflows/{key}/dot_graph/{name}",
    "get_dot_graph",
    response={"type": "object", "properties": {"graph": {"type": "string"}}},
)
def get_dot_graph(session: Session, key: str, name: str) -> dict[str, Any]:
    """Build a DOT graph of the jobs and their job, file or user-data dependencies."""
    return graph_views.dot_graph(session, key, name)


def _paged(result: tuple[list[dict[str, Any]], int], first: int) -> tuple[list[Any], int, int]:
    """(items, total) from an engine function, as envelope's (items, skip, total)."""
    items, total = result
    return items, first, total
