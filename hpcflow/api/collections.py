"""The plain document collections: six CRUD operations each, generated from one table."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint
from pydantic import BaseModel, RootModel
from sqlalchemy.orm import Session

from hpcflow.api.common import PAGE, envelope, page
from hpcflow.api.registry import Q, operation
from hpcflow.engine import documents as docs
from hpcflow.errors import Invalid
from hpcflow.models import (
    AwsScheduler,
    ComputeNode,
    ComputeNodeStats,
    Event,
    File,
    JobProcessStats,
    LocalScheduler,
    ResourceRequirements,
    Result,
    ScheduledComputeNode,
    SlurmScheduler,
    UserData,
)
from hpcflow.models.base import Doc
from hpcflow.models.data import FileIn, ResourceRequirementsIn, UserDataIn
from hpcflow.models.job import ResultIn
from hpcflow.models.nodes import (
    ComputeNodeIn,
    ComputeNodeStatsIn,
    JobProcessStatsIn,
    ScheduledComputeNodeIn,
)
from hpcflow.models.schedulers import AwsSchedulerIn, LocalSchedulerIn, SlurmSchedulerIn

bp = Blueprint("collections", __name__)


class EventIn(RootModel[dict[str, Any]]):
    """A free-form event document; `timestamp` (ms) and `category` are optional."""


@dataclass(frozen=True)
class Collection:
    """How one collection maps onto the six generic operations."""

    name: str
    table: type[Doc]
    body: type[BaseModel]
    singular: str
    filters: tuple[Q, ...]
    title: str


KEY = Q("_key", str)
COLLECTIONS = (
    Collection(
        "aws_schedulers",
        AwsScheduler,
        AwsSchedulerIn,
        "aws_scheduler",
        (KEY, Q("name")),
        "AWS compute node configuration",
    ),
    Collection(
        "compute_nodes",
        ComputeNode,
        ComputeNodeIn,
        "compute_node",
        (KEY, Q("hostname"), Q("is_active", bool)),
        "compute node",
    ),
    Collection(
        "compute_node_stats",
        ComputeNodeStats,
        ComputeNodeStatsIn,
        "compute_node_stats",
        (KEY, Q("hostname")),
        "compute node statistics",
    ),
    Collection("events", Event, EventIn, "event", (KEY, Q("category")), "event"),
    Collection("files", File, FileIn, "file", (KEY, Q("name"), Q("path")), "file"),
    Collection(
        "job_process_stats",
        JobProcessStats,
        JobProcessStatsIn,
        "job_process_stats",
        (KEY, Q("job_key"), Q("run_id", int)),
        "job process statistics",
    ),
    Collection(
        "local_schedulers",
        LocalScheduler,
        LocalSchedulerIn,
        "local_scheduler",
        (KEY, Q("memory"), Q("num_cpus", int)),
        "local compute node configuration",
    ),
    Collection(
        "resource_requirements",
        ResourceRequirements,
        ResourceRequirementsIn,
        "resource_requirements",
        (
            KEY,
            Q("name"),
            Q("memory"),
            Q("num_cpus", int),
            Q("num_gpus", int),
            Q("num_nodes", int),
            Q("runtime"),
        ),
        "resource requirements",
    ),
    Collection(
        "results",
        Result,
        ResultIn,
        "result",
        (KEY, Q("job_key"), Q("run_id", int), Q("return_code", int), Q("status")),
        "job result",
    ),
    Collection(
        "scheduled_compute_nodes",
        ScheduledComputeNode,
        ScheduledComputeNodeIn,
        "scheduled_compute_node",
        (KEY, Q("scheduler_id"), Q("scheduler_config_id"), Q("status")),
        "scheduled compute node",
    ),
    Collection(
        "slurm_schedulers",
        SlurmScheduler,
        SlurmSchedulerIn,
        "slurm_scheduler",
        (
            KEY,
            Q("name"),
            Q("account"),
            Q("gres"),
            Q("mem"),
            Q("nodes", int),
            Q("partition"),
            Q("qos"),
            Q("tmp"),
            Q("walltime"),
        ),
        "Slurm compute node configuration",
    ),
    Collection(
        "user_data",
        UserData,
        UserDataIn,
        "user_data",
        (KEY, Q("name"), Q("is_ephemeral", bool)),
        "user data",
    ),
)


def body_values(c: Collection, body: BaseModel) -> dict[str, Any]:
    """Column values from a parsed body (events keep their free-form document)."""
    if isinstance(body, EventIn):
        data = dict(body.root)
        meta = {k: data.pop(k) for k in ("_key", "_rev") if k in data}
        data.pop("_id", None)
        stamp = data.pop("timestamp", None)
        if stamp is not None and not isinstance(stamp, int | float):
            raise Invalid(
                "event timestamp must be a number of ms since the epoch", field="timestamp"
            )
        category = data.pop("category", None)
        if category is not None and not isinstance(category, str):
            raise Invalid("event category must be a string", field="category")
        return {
            "timestamp": float(stamp) if stamp is not None else time.time() * 1000,
            "category": category,
            "data": data,
            **({"key": meta["_key"]} if "_key" in meta else {}),
            **({"rev": meta["_rev"]} if "_rev" in meta else {}),
        }
    return body.model_dump(exclude_unset=False, exclude={"id_"})


def _register(c: Collection) -> None:
    base = f"/workflows/{{workflow}}/{c.name}"

    @operation(
        bp,
        "GET",
        base,
        f"list_{c.name}",
        query=(*PAGE, *c.filters),
        summary=f"Retrieve all {c.title} documents of a workflow.",
    )
    def list_view(
        session: Session,
        workflow: str,
        skip: float,
        limit: float | None,
        sort_by: str | None,
        reverse_sort: bool,
        **filters: Any,
    ) -> dict[str, Any]:
        wf = docs.get_workflow(session, workflow)
        first, size = page(skip, limit)
        rows, total = docs.list_docs(
            session, c.table, wf.id, filters, first, size, sort_by, reverse_sort
        )
        return envelope([r.to_doc() for r in rows], first, total)  # type: ignore[attr-defined]

    @operation(
        bp,
        "POST",
        base,
        f"add_{c.singular}",
        body=c.body,
        write=True,
        summary=f"Store a {c.title}.",
    )
    def add_view(session: Session, workflow: str, body: BaseModel) -> dict[str, Any]:
        wf = docs.get_workflow(session, workflow)
        row = docs.create_doc(session, c.table, wf.id, body_values(c, body))
        return row.to_doc()  # type: ignore[attr-defined]

    @operation(
        bp,
        "DELETE",
        base,
        f"delete_{c.name}",
        write=True,
        summary=f"Delete all {c.title} documents of a workflow.",
    )
    def delete_all_view(session: Session, workflow: str) -> dict[str, Any]:
        wf = docs.get_workflow(session, workflow)
        return {"message": f"deleted {docs.delete_all(session, c.table, wf.id)} {c.name}"}

    @operation(
        bp,
        "GET",
        f"{base}/{{key}}",
        f"get_{c.singular}",
        summary=f"Retrieve the {c.title} for a key.",
    )
    def get_view(session: Session, workflow: str, key: str) -> dict[str, Any]:
        wf = docs.get_workflow(session, workflow)
        return docs.get_doc(session, c.table, wf.id, key).to_doc()  # type: ignore[attr-defined]

    @operation(
        bp,
        "PUT",
        f"{base}/{{key}}",
        f"modify_{c.singular}",
        body=c.body,
        write=True,
        summary=f"Update a {c.title}; a stale _rev is a 409.",
    )
    def modify_view(session: Session, workflow: str, key: str, body: BaseModel) -> dict[str, Any]:
        wf = docs.get_workflow(session, workflow)
        row = docs.get_doc(session, c.table, wf.id, key)
        values = body_values(c, body)
        values.pop("key", None)
        return docs.update_doc(session, row, values).to_doc()  # type: ignore[attr-defined]

    @operation(
        bp,
        "DELETE",
        f"{base}/{{key}}",
        f"remove_{c.singular}",
        write=True,
        summary=f"Delete a {c.title} and its edges.",
    )
    def remove_view(session: Session, workflow: str, key: str) -> dict[str, Any]:
        wf = docs.get_workflow(session, workflow)
        return docs.delete_doc(session, docs.get_doc(session, c.table, wf.id, key))


for _collection in COLLECTIONS:
    _register(_collection)
