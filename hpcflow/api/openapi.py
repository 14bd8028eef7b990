"""Build the server's OpenAPI 3 document from the operation registry and pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from hpcflow import API_VERSION, __version__
from hpcflow.api.registry import OPERATIONS, Operation

_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "object"},
        "errorNum": {"type": "integer"},
        "errorMessage": {"type": "string"},
        "code": {"type": "integer"},
    },
}


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in op.path_params
    ]
    for q in op.query:
        schema: dict[str, Any] = {"type": _TYPES.get(q.type, "string")}
        if q.default is not None:
            schema["default"] = q.default
        params.append(
            {
                "name": q.name,
                "in": "query",
                "required": False,
                "schema": schema,
                "description": q.description,
            }
        )
    entry: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {}}}},
            "default": {
                "description": "Error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/error"}}},
            },
        },
    }
    if op.extension:
        entry["x-hpcflow-extension"] = True
    if op.body is not None:
        entry["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": _schema_ref(op.body, components)}},
        }
    if isinstance(op.response, type) and issubclass(op.response, BaseModel):
        entry["responses"]["200"]["content"]["application/json"]["schema"] = _schema_ref(
            op.response, components
        )
    elif isinstance(op.response, dict):
        entry["responses"]["200"]["content"]["application/json"]["schema"] = op.response
    return entry


def build_spec(url_prefix: str = "") -> dict[str, Any]:
    """The whole OpenAPI document for every registered operation."""
    components: dict[str, Any] = {"error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for op in sorted(OPERATIONS, key=lambda o: (o.path, o.method)):
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, components)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "hpcflow",
            "version": __version__,
            "description": f"hpcflow workflow service; wire-compatible with torc {API_VERSION}.",
        },
        "servers": [{"url": url_prefix or "/"}],
        "paths": paths,
        "components": {"schemas": components},
    }
