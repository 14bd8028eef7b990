"""Declare each HTTP operation once: Flask route, input parsing, transaction and OpenAPI entry."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel, ValidationError

from hpcflow.db import sqlite_writers
from hpcflow.errors import BadRequest, Invalid

_PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Q:
    """A query parameter: name, type (bool, int, float or str) and default."""

    name: str
    type: type = str
    default: Any = None
    description: str = ""


@dataclass
class Operation:
    """One documented operation of the API."""

    method: str
    path: str
    operation_id: str
    summary: str
    body: type[BaseModel] | None
    body_required: bool
    query: tuple[Q, ...]
    response: type[BaseModel] | dict[str, Any] | None
    tag: str
    extension: bool = False
    path_params: list[str] = field(default_factory=list)


OPERATIONS: list[Operation] = []


def _flask_path(path: str) -> str:
    return _PARAM.sub(r"<\1>", path)


def _parse_query(spec: tuple[Q, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for q in spec:
        raw = request.args.get(q.name)
        if raw is None or raw == "" or raw == "null":
            values[q.name] = q.default
            continue
        values[q.name] = parse_scalar(raw, q.type, q.name)
    return values


def parse_scalar(raw: str, kind: type, name: str) -> Any:
    """Parse a query or path value, naming the parameter when it is malformed."""
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(float(raw)) if float(raw).is_integer() else int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise BadRequest(
            f"query parameter {name!r} must be a {kind.__name__}, got {raw!r}", field=name
        ) from None
    return raw


def parse_body(model: type[BaseModel], *, required: bool = True) -> BaseModel | None:
    """Parse the JSON body into `model`, or raise 400/422 naming the bad field."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise Invalid(f"request body ({model.__name__}) is required", field="body")
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", field="body") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc, model.__name__) from None


def invalid_from(exc: ValidationError, what: str) -> Invalid:
    """Turn a pydantic error into one 422 naming every bad field."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        problems.append(f"{loc}: {err['msg']}")
    first = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else None
    return Invalid(f"invalid {what}: " + "; ".join(problems), field=first, errors=problems)


def operation(
    bp: Blueprint,
    method: str,
    path: str,
    operation_id: str,
    *,
    summary: str = "",
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: tuple[Q, ...] = (),
    response: type[BaseModel] | dict[str, Any] | None = None,
    write: bool = False,
    immediate: bool = False,
    extension: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view as an operation; it receives session, path values, query and body."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        op = Operation(
            method=method.upper(),
            path=path,
            operation_id=operation_id,
            summary=summary or (view.__doc__ or "").strip(),
            body=body,
            body_required=body_required,
            query=query,
            response=response,
            tag=bp.name,
            extension=extension,
            path_params=_PARAM.findall(path),
        )
        OPERATIONS.append(op)

        @functools.wraps(view)
        def handler(**path_values: Any) -> Response | tuple[Response, int]:
            kwargs: dict[str, Any] = dict(path_values)
            kwargs.update(_parse_query(query))
            if body is not None:
                kwargs["body"] = parse_body(body, required=body_required)
            state = current_app.extensions["hpcflow"]
            writers = sqlite_writers(state.engine) if (immediate or write) else None
            if writers is not None:
                writers.acquire()
            session = state.sessions()
            g.session = session
            try:
                # A deferred SQLite transaction that reads and then writes fails at once
                # ("database is locked") when another writer got in between; writers queue.
                if (immediate or write) and state.is_sqlite:
                    session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
                result = view(session, **kwargs)
                if write:
                    session.commit()
                else:
                    session.rollback()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
                if writers is not None:
                    writers.release()
            if isinstance(result, Response):
                return result
            return jsonify(result)

        bp.add_url_rule(
            _flask_path(path), endpoint=operation_id, view_func=handler, methods=[op.method]
        )
        return view

    return decorate
