"""Helpers every blueprint shares: list envelopes, paging, and key parsing."""

from __future__ import annotations

from typing import Any

from flask import current_app

from hpcflow.api.registry import Q
from hpcflow.errors import Invalid

PAGE = (
    Q("skip", float, 0, "Number of documents to skip"),
    Q("limit", float, None, "Maximum number of documents to return"),
    Q("sort_by", str, None, "Field to sort by"),
    Q("reverse_sort", bool, False, "Sort in descending order"),
)
SKIP_LIMIT = (PAGE[0], PAGE[1])
# Anything past this is not a page a client could mean.
MAX_SKIP = 10**12


def max_limit() -> int:
    """The largest page the server returns (settings.max_page_size)."""
    return int(current_app.extensions["hpcflow"].settings.max_page_size)


def page(skip: float | None, limit: float | None) -> tuple[int, int]:
    """Validate skip and limit; a missing limit means the largest page."""
    biggest = max_limit()
    skip_i = 0 if skip is None else skip
    if skip_i < 0 or skip_i > MAX_SKIP or int(skip_i) != skip_i:
        raise Invalid(f"skip must be a whole number from 0 to {MAX_SKIP}, got {skip}", field="skip")
    if limit is None:
        return int(skip_i), biggest
    if limit < 0 or limit > biggest or int(limit) != limit:
        raise Invalid(
            f"limit must be a whole number from 0 to {biggest}, got {limit}", field="limit"
        )
    return int(skip_i), int(limit)


def envelope(items: list[Any], skip: int, total: int) -> dict[str, Any]:
    """torc's list response: items plus paging facts."""
    return {
        "items": items,
        "skip": skip,
        "max_limit": max_limit(),
        "count": len(items),
        "total_count": total,
        "has_more": skip + len(items) < total,
    }
