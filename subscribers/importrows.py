"""The rows an import has read: one temporary table holding each address once.

It finds repeated addresses without memory growing with the file, and the batch's writes
read their rows from it. On PostgreSQL each batch is first COPYed into a staging table
(`subscribers.bulk`); the statements then name the batch by that table.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy import Connection

from subscribers.bulk import ROWS, STAGED, Among, copy_rows, on_postgres
from subscribers.csvrows import ImportRow

# On PostgreSQL, statistics are refreshed after this many rows, then each time they double.
_FIRST_ANALYSIS = 10_000


class RowsRead:
    """The temporary table of rows read so far; created on the import's connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.duplicates = 0
        self.among = Among()  # how SQL names the batch just kept
        self.kept = 0  # rows kept (and so written) so far
        self._analyse_at = _FIRST_ANALYSIS
        self.staging = on_postgres(conn)
        # PostgreSQL will not read text into a json column; SQLite keeps JSON as text anyway.
        topics_type = "JSON" if self.staging else "TEXT"
        for table in self._tables():
            conn.execute(
                sa.text(
                    f"CREATE TEMPORARY TABLE {table} (email VARCHAR(320) PRIMARY KEY,"
                    f" line INTEGER NOT NULL, name VARCHAR(200) NOT NULL, topics {topics_type}"
                    " NOT NULL, cadence VARCHAR(20) NOT NULL)"
                )
            )
        self._remember = sa.text(
            f"INSERT INTO {ROWS.name} (email, line, name, topics, cadence)"
            " VALUES (:email, :line, :name, :topics, :cadence)"
        )

    def _tables(self) -> list[str]:
        return [ROWS.name, STAGED.name] if self.staging else [ROWS.name]

    def keep_first(self, rows: list[ImportRow], rejected: list[tuple[int, str]]) -> list[ImportRow]:
        """The rows whose address was not read before, now remembered; repeats go to `rejected`."""
        if not rows:
            return []
        if self.staging and self.kept >= self._analyse_at:
            self._analyse()
        first = self._stage(rows) if self.staging else self._read_before(rows)
        fresh = []
        for row in rows:
            if row.email in first:
                self.duplicates += 1
                rejected.append((row.line, f"duplicate: of line {first[row.email]} ({row.email})"))
                continue
            first[row.email] = row.line
            fresh.append(row)
        if self.staging:
            # The staging table holds exactly `fresh` now: remember them all at once.
            self.conn.execute(sa.text(f"INSERT INTO {ROWS.name} SELECT * FROM {STAGED.name}"))
            self.among = Among(frozenset(row.email for row in fresh))
        elif fresh:
            self.conn.execute(self._remember, [_row_values(row) for row in fresh])
        self.kept += len(fresh)
        return fresh

    def _read_before(self, rows: list[ImportRow]) -> dict[str, int]:
        """Address → first line, for the rows' addresses read in earlier batches."""
        lookup = sa.select(ROWS.c.email, ROWS.c.line).where(
            ROWS.c.email.in_([row.email for row in rows])
        )
        return dict(self.conn.execute(lookup).all())

    def _stage(self, rows: list[ImportRow]) -> dict[str, int]:
        """`_read_before` on PostgreSQL: COPY the batch (each address once) into the staging
        table, then take the addresses read before out of it again."""
        self.conn.execute(sa.text(f"TRUNCATE {STAGED.name}"))
        once = {row.email: row for row in reversed(rows)}  # the first row of each address
        values = (_row_tuple(row) for row in sorted(once.values(), key=lambda r: r.line))
        copy_rows(self.conn, STAGED.name, _COLUMNS, values)
        earlier = self.conn.execute(
            sa.text(
                f"DELETE FROM {STAGED.name} AS b USING {ROWS.name} AS r"
                " WHERE b.email = r.email RETURNING b.email, r.line"
            )
        )
        found = dict(earlier.all())
        # Temporary tables get no automatic statistics: without them the plans go wrong.
        self.conn.execute(sa.text(f"ANALYZE {STAGED.name}"))
        return found

    def _analyse(self) -> None:
        """Refresh PostgreSQL's statistics of the tables the import fills, as they double.

        Autovacuum cannot see the import's uncommitted rows (nor temporary tables at all), so
        the planner would go on believing the tables small and scan them whole for every
        batch: a time that grows with the square of the file. ANALYZE in the transaction
        counts them.
        """
        self.conn.execute(sa.text(f"ANALYZE subscribers, subscriptions, {ROWS.name}"))
        self._analyse_at = 2 * self.kept

    def drop(self) -> None:
        for table in self._tables():
            self.conn.execute(sa.text(f"DROP TABLE {table}"))


_COLUMNS = ("email", "line", "name", "topics", "cadence")


def _row_values(row: ImportRow) -> dict[str, object]:
    """A row as a new subscription takes it: no topics means every topic."""
    return dict(zip(_COLUMNS, _row_tuple(row), strict=True))


def _row_tuple(row: ImportRow) -> tuple[object, ...]:
    topics = json.dumps(list(row.topics or ()))
    return (row.email, row.line, row.name or "", topics, row.cadence or "weekly")
