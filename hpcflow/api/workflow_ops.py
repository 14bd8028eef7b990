"""Workflow-level operations: initialize, claim, completion checks, cancel, resets, auto-tune."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy.orm import Session

from hpcflow.api.registry import Q, operation
from hpcflow.autotune import torc
from hpcflow.engine import claims, initialize, requirements, restart
from hpcflow.models.nodes import NodeResources

bp = Blueprint("workflow_ops", __name__)
NODE = Q(
    "compute_node_key",
    str,
    None,
    "hpcflow extension: compute node that claims the jobs (recorded on each job)",
)


def _obj(**props: str) -> dict[str, Any]:
    return {"type": "object", "properties": {k: {"type": v} for k, v in props.items()}}


_JOBS = {
    "type": "object",
    "properties": {
        "jobs": {"type": "array", "items": {"type": "object"}},
        "reason": {"type": "string"},
    },
}
_KEYS = {"type": "array", "items": {"type": "string"}}


@operation(
    bp,
    "GET",
    "/workflows/{key}/is_complete",
    "is_workflow_complete",
    write=True,
    immediate=True,
    response=_obj(
        is_canceled="boolean", is_complete="boolean", needs_to_run_completion_script="boolean"
    ),
)
def is_workflow_complete(session: Session, key: str) -> dict[str, Any]:
    """Report whether every job is finished (done, terminated, canceled or disabled)."""
    return restart.is_complete(session, key)


@operation(
    bp,
    "GET",
    "/workflows/{key}/ready_job_requirements",
    "get_ready_job_requirements",
    query=(
        Q(
            "scheduler_config_id",
            str,
            None,
            "Limit output to jobs assigned this scheduler (and unassigned jobs).",
        ),
    ),
    response=_obj(
        num_jobs="integer",
        num_cpus="integer",
        num_gpus="integer",
        memory_gb="number",
        max_num_nodes="integer",
        max_runtime="string",
    ),
)
def get_ready_job_requirements(
    session: Session, key: str, scheduler_config_id: str | None
) -> dict[str, Any]:
    """Return the total resources of ready jobs and the longest runtime."""
    return requirements.ready_job_requirements(session, key, scheduler_config_id)


@operation(
    bp,
    "POST",
    "/workflows/{key}/initialize_jobs",
    "initialize_jobs",
    write=True,
    immediate=True,
    query=(
        Q(
            "only_uninitialized",
            bool,
            False,
            "Only initialize jobs with a status of uninitialized.",
        ),
        Q("clear_ephemeral_user_data", bool, True, "Clear all ephemeral user data."),
    ),
)
def initialize_jobs(
    session: Session, key: str, only_uninitialized: bool, clear_ephemeral_user_data: bool
) -> dict[str, Any]:
    """Derive dependencies from files and user data; set each job blocked or ready."""
    return initialize.initialize_jobs(
        session,
        key,
        only_uninitialized=only_uninitialized,
        clear_ephemeral_user_data=clear_ephemeral_user_data,
    )


@operation(
    bp,
    "POST",
    "/workflows/{key}/process_changed_job_inputs",
    "process_changed_job_inputs",
    write=True,
    immediate=True,
    query=(Q("dry_run", bool, False, "If true, report changes but do not change the database."),),
    response={"type": "object", "properties": {"reinitialized_jobs": _KEYS}},
)
def process_changed_job_inputs(session: Session, key: str, dry_run: bool) -> dict[str, Any]:
    """Reset jobs whose inputs or command changed since they ran, and everything downstream."""
    return restart.process_changed_job_inputs(session, key, dry_run=dry_run)


@operation(
    bp,
    "GET",
    "/workflows/{key}/missing_user_data",
    "list_missing_user_data",
    response={"type": "object", "properties": {"user_data": _KEYS}},
)
def list_missing_user_data(session: Session, key: str) -> dict[str, Any]:
    """List user data that jobs consume and that should exist but has no data."""
    return initialize.list_missing_user_data(session, key)


@operation(
    bp,
    "GET",
    "/workflows/{key}/required_existing_files",
    "list_required_existing_files",
    response={"type": "object", "properties": {"files": _KEYS}},
)
def list_required_existing_files(session: Session, key: str) -> dict[str, Any]:
    """List files that jobs need, no job produces, and that are missing."""
    return initialize.list_required_existing_files(session, key)


@operation(
    bp,
    "POST",
    "/workflows/{key}/prepare_jobs_for_submission",
    "prepare_jobs_for_submission",
    body=NodeResources,
    write=True,
    immediate=True,
    query=(
        Q(
            "sort_method",
            str,
            "gpus_runtime_memory",
            "gpus_runtime_memory, gpus_memory_runtime or none",
        ),
        Q("limit", float, None, "Maximum number of jobs to return"),
        NODE,
    ),
    response=_JOBS,
)
def prepare_jobs_for_submission(
    session: Session,
    key: str,
    body: NodeResources,
    sort_method: str,
    limit: float | None,
    compute_node_key: str | None,
) -> dict[str, Any]:
    """Claim ready jobs that fit the worker's resources; they become submitted_pending."""
    return claims.prepare_jobs_for_submission(
        session, key, body, sort_method, limit, compute_node_key
    )


@operation(
    bp,
    "POST",
    "/workflows/{key}/prepare_next_jobs_for_submission",
    "prepare_next_jobs_for_submission",
    write=True,
    immediate=True,
    query=(Q("limit", float, 1, "Number of jobs to return"), NODE),
    response=_JOBS,
)
def prepare_next_jobs_for_submission(
    session: Session, key: str, limit: float, compute_node_key: str | None
) -> dict[str, Any]:
    """Claim the next ready jobs without a resource check; they become submitted_pending."""
    return claims.prepare_next_jobs_for_submission(session, key, limit, compute_node_key)


@operation(
    bp,
    "POST",
    "/workflows/{key}/prepare_jobs_for_scheduling",
    "prepare_jobs_for_scheduling",
    write=True,
    immediate=True,
    response={
        "type": "object",
        "properties": {"schedulers": {"type": "array", "items": {"type": "object"}}},
    },
)
def prepare_jobs_for_scheduling(session: Session, key: str) -> dict[str, Any]:
    """Ready jobs that schedule their own compute nodes become scheduled; return the params."""
    return requirements.prepare_jobs_for_scheduling(session, key)


@operation(
    bp,
    "POST",
    "/workflows/{key}/auto_tune_resource_requirements",
    "auto_tune_resource_requirements",
    write=True,
    immediate=True,
)
def auto_tune_resource_requirements(session: Session, key: str) -> dict[str, Any]:
    """Enable auto-tune: one job per resource-requirements group runs, the rest wait disabled."""
    return torc.auto_tune_resource_requirements(session, key)


@operation(
    bp,
    "POST",
    "/workflows/{key}/process_auto_tune_resource_requirements_results",
    "process_auto_tune_resource_requirements_results",
    write=True,
    immediate=True,
)
def process_auto_tune_resource_requirements_results(session: Session, key: str) -> dict[str, Any]:
    """Set each group's requirements from its measured job and re-enable the disabled jobs."""
    return torc.process_auto_tune_results(session, key)


@operation(bp, "PUT", "/workflows/{key}/cancel", "cancel_workflow", write=True, immediate=True)
def cancel_workflow(session: Session, key: str) -> dict[str, Any]:
    """Cancel the workflow: unfinished jobs are canceled and runners stop theirs."""
    return restart.cancel_workflow(session, key)


@operation(
    bp, "POST", "/workflows/{key}/reset_status", "reset_workflow_status", write=True, immediate=True
)
def reset_workflow_status(session: Session, key: str) -> dict[str, Any]:
    """Reset the workflow status (cancel flag, auto-tune state, completion-script flag)."""
    return restart.reset_workflow_status(session, key)


@operation(
    bp,
    "POST",
    "/workflows/{key}/reset_job_status",
    "reset_job_status",
    write=True,
    immediate=True,
    query=(Q("failed_only", bool, False, "Only reset failed jobs"),),
)
def reset_job_status(session: Session, key: str, failed_only: bool) -> dict[str, Any]:
    """Reset jobs (or only failed ones and their downstream) to uninitialized."""
    return restart.reset_job_status(session, key, failed_only=failed_only)
