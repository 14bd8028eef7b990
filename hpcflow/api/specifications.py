"""Workflow specifications: a whole workflow in one document, by names (torc's spec routes)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import RootModel
from sqlalchemy.orm import Session

from hpcflow.api.registry import operation
from hpcflow.engine import spec_examples, specifications
from hpcflow.spec import WorkflowSpec

bp = Blueprint("specifications", __name__)
_SPEC = {"$ref": "#/components/schemas/WorkflowSpecification"}
_WORKFLOW = {"type": "object", "description": "workflow_model"}


class WorkflowSpecification(RootModel[dict[str, Any]]):
    """A workflow spec; hpcflow.spec checks it so that errors name spec paths (jobs[3].name)."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """Document the real spec model, not the raw object this parses into."""
        return WorkflowSpec.model_json_schema(*args, **kwargs)


@operation(
    bp,
    "POST",
    "/workflow_specifications",
    "add_workflow_specification",
    body=WorkflowSpecification,
    write=True,
    immediate=True,
    response=_WORKFLOW,
)
def add_workflow_specification(session: Session, body: WorkflowSpecification) -> dict[str, Any]:
    """Store a whole workflow in one transaction; references are names within the spec."""
    return specifications.create_from_spec(session, body.root).to_doc()


@operation(
    bp,
    "GET",
    "/workflow_specifications/example",
    "get_workflow_specification_example",
    response=_SPEC,
)
def get_workflow_specification_example(session: Session) -> dict[str, Any]:
    """Return a small valid workflow specification: the diamond."""
    return spec_examples.example()


@operation(
    bp,
    "GET",
    "/workflow_specifications/template",
    "get_workflow_specification_template",
    response=_SPEC,
)
def get_workflow_specification_template(session: Session) -> dict[str, Any]:
    """Return an empty workflow specification with the default config."""
    return spec_examples.template()


@operation(
    bp, "GET", "/workflow_specifications/{key}", "get_workflow_specification", response=_SPEC
)
def get_workflow_specification(session: Session, key: str) -> dict[str, Any]:
    """Return a stored workflow as a specification: every reference by name."""
    return specifications.render_spec(session, key)
