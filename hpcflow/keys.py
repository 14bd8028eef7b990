"""Document keys and ArangoDB-style _ids ('<collection>/<key>')."""

from __future__ import annotations

from hpcflow.errors import HpcflowError, Invalid, NotFound

# SQL integer columns: a key beyond this cannot exist.
MAX_KEY = 2**63 - 1


def parse_key(text: str | int, what: str, *, missing: type[HpcflowError] = NotFound) -> int:
    """An integer key from a path or body value; a non-numeric key names no document."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise missing(f"{what} {text!r} not found (keys are integers)", field=what) from None
    if value < 1 or value > MAX_KEY:
        raise missing(f"{what} {text!r} not found", field=what)
    return value


def parse_ref(ref: str, collections: tuple[str, ...] | str, field: str) -> tuple[str, int]:
    """Split '<collection>/<key>' (or a bare key when one collection is allowed)."""
    allowed = (collections,) if isinstance(collections, str) else collections
    coll, sep, key = ref.rpartition("/")
    if not sep:
        if len(allowed) != 1:
            raise Invalid(f"{field}: {ref!r} must be an _id like '{allowed[0]}/<key>'", field=field)
        coll = allowed[0]
    if coll not in allowed:
        raise Invalid(
            f"{field}: {ref!r} must reference {' or '.join(allowed)}, not {coll!r}", field=field
        )
    return coll, parse_key(key, field, missing=Invalid)
