"""`column IN ids` with the ids as one bound value, for the tick's queries over many workflows.

A literal IN list of a thousand ids costs SQLAlchemy and the server 7-15 ms per query to render
and parse; the tick runs a dozen such queries. PostgreSQL takes an array (`= ANY(:ids)`, which
still uses the index), SQLite a JSON text read by json_each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Integer, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def among(session: Session, column: Any, ids: Iterable[int]) -> Any:
    """A condition: `column` is one of `ids` (integers)."""
    values = [int(i) for i in ids]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(Integer)))
    if dialect == "sqlite":
        each = func.json_each(bindparam(None, json.dumps(values))).table_valued("value")
        return column.in_(select(each.c.value))
    return column.in_(values)
