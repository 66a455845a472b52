"""Bulk SQL for the import, per database: naming a batch's addresses, and loading rows.

SQLite takes IN (...) lists and an executemany. On PostgreSQL, binding a 1000-value list
costs more than the query, so a batch's rows are streamed into a staging table with COPY
(psycopg 3 `cursor.copy`), and statements name the batch's addresses by that table: the
addresses in it, or (when fewer) a single array parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql

# Every row read so far (one per address), in a temporary table: it finds repeats without
# memory growing with the file, and the INSERT ... SELECTs read the rows from it.
ROWS = sa.table(
    "digest_import_rows",
    sa.column("email", sa.String),
    sa.column("line", sa.Integer),
    sa.column("name", sa.String),
    sa.column("topics", sa.JSON),
    sa.column("cadence", sa.String),
)
# On PostgreSQL, the current batch's new rows (the same columns); emptied for each batch.
STAGED = sa.table("digest_import_batch", *(sa.column(c.name, c.type) for c in ROWS.columns))


def on_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


@dataclass(frozen=True, slots=True)
class Among:
    """How a batch's statements pick some of its addresses (`where`).

    `staged` is what the staging table holds (PostgreSQL), None where there is none (SQLite).
    """

    staged: frozenset[str] | None = None

    @property
    def rows(self) -> sa.TableClause:
        """Where statements read the batch's rows: the small staging table, if there is one."""
        return ROWS if self.staged is None else STAGED

    def where(self, column: Any, emails: Iterable[str]) -> sa.ColumnElement[bool]:
        """`column` is one of `emails`."""
        if self.staged is None:
            return column.in_(list(emails))
        wanted = set(emails)
        left_out = self.staged - wanted
        if len(wanted) <= len(left_out) or not wanted <= self.staged:
            return column == sa.any_(_array(wanted))
        unless = STAGED.c.email != sa.all_(_array(left_out)) if left_out else sa.true()
        if column.table is STAGED:
            return unless
        return column.in_(sa.select(STAGED.c.email).where(unless).correlate(None))


# SQLite's way, and the default: IN (...) lists of the values.
IN_LISTS = Among()


def _array(emails: Iterable[str]) -> sa.BindParameter[Any]:
    return sa.bindparam(None, sorted(emails), type_=postgresql.ARRAY(sa.String))


def copy_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    """Append rows (values in `columns` order) to a PostgreSQL table with COPY."""
    # The DBAPI connection is the one SQLAlchemy's transaction runs on: COPY joins it.
    driver = conn.connection.driver_connection
    assert driver is not None
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
