"""Fast bulk inserts: ids reserved up front, then COPY (PostgreSQL) or executemany (SQLite).

SQLAlchemy's multi-row INSERT ... RETURNING costs seconds per 10,000 rows on psycopg (it
re-parses every huge statement); reserving the ids first lets both databases take the rows in
their fastest form while callers still learn each row's key in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from hpcflow.errors import Conflict
from hpcflow.models.base import Doc


def _table(table: type[Doc] | Table) -> Table:
    return table if isinstance(table, Table) else table_of(table)


def table_of(model: type[Any]) -> Any:
    """A model's Core table; its columns type-check where SQLModel attributes do not."""
    return model.__table__


def is_postgres(session: Session) -> bool:
    """True on PostgreSQL (COPY and sequences), False on SQLite."""
    return session.get_bind().dialect.name == "postgresql"


_LARGEST: dict[str, Any] = {}


def reserve_ids(
    session: Session, table: type[Doc] | Table, count: int, *, after: int = 0
) -> list[int]:
    """`count` fresh primary keys for `table`, ascending and all greater than `after`.

    PostgreSQL draws them from the table's sequence. SQLite continues after the largest key;
    writes there run under BEGIN IMMEDIATE, so no other writer can take the same keys.
    """
    t = _table(table)
    if after:
        advance_sequence(session, t, after)
    if count <= 0:
        return []
    if is_postgres(session):
        sql = text(
            f"SELECT nextval(pg_get_serial_sequence('{t.name}', 'id')) FROM generate_series(1, :n)"
        )
        return sorted(session.scalars(sql, {"n": count}))
    largest = _LARGEST.get(t.name)
    if largest is None:  # built once per table: building a select costs more than running it
        largest = _LARGEST[t.name] = select(func.coalesce(func.max(t.c.id), 0))
    start = int(session.scalar(largest) or 0)
    start = max(start, after)
    return list(range(start + 1, start + count + 1))


def advance_sequence(session: Session, table: type[Doc] | Table, at_least: int = 0) -> None:
    """Keep PostgreSQL's sequence past keys stored explicitly (SQLite needs nothing)."""
    if is_postgres(session):
        t = _table(table)
        session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'), "
                f"GREATEST((SELECT COALESCE(max(id), 0) FROM {t.name}), :least, 1))"
            ),
            {"least": at_least},
        )


def check_free(session: Session, table: type[Doc] | Table, ids: Iterable[int]) -> None:
    """409 naming the first client-chosen key that is already taken."""
    t = _table(table)
    wanted = sorted(set(ids))
    for i in range(0, len(wanted), 5000):
        taken = session.scalar(select(func.min(t.c.id)).where(t.c.id.in_(wanted[i : i + 5000])))
        if taken is not None:
            raise Conflict(f"{t.name} key {taken!r} already exists", field="_key")


# Ids this dense within their range are checked by one range scan instead of IN lists.
DENSE_RANGE = 4


def existing_ids(
    session: Session, table: type[Doc] | Table, workflow_id: int, ids: Iterable[int]
) -> set[int]:
    """Those of `ids` that are rows of `table` in the workflow.

    Keys a workflow created in bulk are nearly contiguous, so one primary-key range read
    replaces thousands of bound IN parameters (0.4 s for 10,000 keys on PostgreSQL)."""
    t = _table(table)
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    low, high = wanted[0], wanted[-1]
    if high - low + 1 <= DENSE_RANGE * len(wanted):
        rows = session.scalars(
            select(t.c.id).where(t.c.id.between(low, high), t.c.workflow_id == workflow_id)
        )
        return set(rows).intersection(wanted)
    found: set[int] = set()
    for i in range(0, len(wanted), 5000):
        found.update(
            session.scalars(
                select(t.c.id).where(
                    t.c.id.in_(wanted[i : i + 5000]), t.c.workflow_id == workflow_id
                )
            )
        )
    return found


def _copy_value(value: Any) -> Any:
    # JSON columns take the JSON text; everything else goes in as it is.
    return json.dumps(value) if isinstance(value, dict | list) else value


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One field of any type in COPY's text format."""
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict | list):
        value = json.dumps(value)
    return str(value).translate(_ESCAPES)


def _copy_int(value: Any) -> str:
    return "\\N" if value is None else str(int(value))


def _copy_str(value: Any) -> str:
    return "\\N" if value is None else str(value).translate(_ESCAPES)


def _copy_bool(value: Any) -> str:
    return "\\N" if value is None else ("t" if value else "f")


def _copy_float(value: Any) -> str:
    return "\\N" if value is None else str(value)  # str(float) is its shortest round-trip form


def _converter(column: Any) -> Callable[[Any], str]:
    """The cheapest correct COPY formatter for a column (psycopg's per-row adaptation, and a
    generic formatter, cost 5x and 2x as much)."""
    kind = column.type.__class__.__name__
    if kind in ("Integer", "BigInteger", "SmallInteger"):
        return str if not column.nullable and not column.primary_key else _copy_int
    if kind in ("String", "AutoString", "Text", "VARCHAR"):
        return _copy_str
    if kind == "Boolean":
        return _copy_bool
    if kind in ("Float", "Double"):
        return _copy_float
    return _copy_text


def insert_rows(
    session: Session,
    table: type[Doc] | Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    plain: bool = False,
) -> None:
    """Insert plain rows (values in `columns` order) as fast as the database allows.

    `plain` promises that no value is None and none needs escaping (numbers, and names and
    collections this code chose), which lets PostgreSQL's COPY lines skip the per-field work.
    """
    if not rows:
        return
    t = _table(table)
    # Raw inserts skip SQLAlchemy's Python-side column defaults; add the missing ones.
    missing = [
        (c.name, c.default.arg)  # type: ignore[attr-defined]
        for c in t.columns
        if c.name not in columns and c.default is not None and c.default.is_scalar
    ]
    if missing:
        plain = False
        columns = [*columns, *(name for name, _ in missing)]
        tail = tuple(value for _, value in missing)
        rows = [(*row, *tail) for row in rows]
    conn = session.connection()
    quote = conn.dialect.identifier_preparer.quote
    # Column names such as "constraint" are SQL keywords.
    names = ", ".join(quote(c) for c in columns)
    if is_postgres(session):
        convs = [_converter(t.c[c]) for c in columns]
        cursor = conn.connection.cursor()
        with cursor.copy(f"COPY {quote(t.name)} ({names}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for i in range(0, len(rows), 5000):
                chunk = rows[i : i + 5000]
                if plain:
                    lines = ["\t".join(map(str, row)) for row in chunk]
                else:
                    # Column by column: map() over one converter is half the cost of a
                    # converter call per cell (10,000 jobs: 116 -> 64 ms).
                    columns_of = zip(*chunk, strict=True)
                    fields = [list(map(f, c)) for f, c in zip(convs, columns_of, strict=True)]
                    lines = list(map("\t".join, zip(*fields, strict=True)))
                copy.write("\n".join(lines) + "\n")
        return
    marks = ", ".join("?" for _ in columns)
    json_cols = [i for i, c in enumerate(columns) if t.c[c].type.__class__.__name__ == "JSON"]
    if json_cols:
        rows = [
            tuple(_copy_value(v) if i in json_cols else v for i, v in enumerate(row))
            for row in rows
        ]
    conn.exec_driver_sql(
        f"INSERT INTO {quote(t.name)} ({names}) VALUES ({marks})", list(map(tuple, rows))
    )


# Past this many new rows, and a fifth of what the statistics know, they are refreshed.
STATS_AFTER_ROWS = 1000
STALE_FRACTION = 0.2


def refresh_stats(session: Session, inserted: int, *tables: type[Doc] | Table) -> None:
    """ANALYZE tables whose statistics a bulk insert of `inserted` rows made stale.

    Without statistics both databases join edges to edges badly: SQLite goes through the
    (workflow_id, name) prefix of the unique index instead of ix_edges_to, and PostgreSQL
    (before autovacuum gets to a freshly copied table) picks a nested loop. initialize_jobs on
    100,000 file-linked jobs then takes 20+ minutes instead of 1-2 s. ANALYZE costs 0.1-0.3 s
    a table, so tables whose statistics still roughly hold are left alone.
    """
    if inserted < STATS_AFTER_ROWS:
        return
    for table in tables:
        name = _table(table).name
        known = _known_rows(session, name)
        if known is None or inserted > STALE_FRACTION * known:
            session.execute(text(f"ANALYZE {name}"))


def _known_rows(session: Session, name: str) -> float | None:
    """Rows the planner's statistics count for a table; None when it has none."""
    if is_postgres(session):
        rows = session.scalar(
            text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": name}
        )
        return None if rows is None or rows < 0 else float(rows)
    if session.scalar(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")) is None:
        return None
    stat = session.scalar(text("SELECT stat FROM sqlite_stat1 WHERE tbl = :t LIMIT 1"), {"t": name})
    return float(stat.split()[0]) if stat else None
