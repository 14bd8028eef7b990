"""HTTP API: one blueprint per resource family; routes stay thin."""

from __future__ import annotations

import importlib

from flask import Blueprint

# Each module defines `bp`; order does not matter to Flask's router.
MODULES = (
    "meta",
    "workflows",
    "collections",
    "jobs",
    "edges",
    "specifications",
    "workflow_ops",
    "claims",
    "batch",
    "queries",
    "logs",
    "scaling",
    "reports",
    "autotune",
)


def blueprints() -> list[Blueprint]:
    """Every blueprint of the API (imported lazily so importing hpcflow stays cheap)."""
    found = []
    for name in MODULES:
        try:
            module = importlib.import_module(f"hpcflow.api.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hpcflow.api.{name}":
                raise
            continue
        found.append(module.bp)
    return found
