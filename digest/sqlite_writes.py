"""SQLite writers of one process take turns on a lock instead of polling SQLite's busy handler.

SQLite lets one writer in at a time. The others wait in its busy handler, which sleeps in steps
growing to 100 ms between looks, so under load (many one-click unsubscribes at once) the
database sits free while every waiter sleeps, and some writes wait over a second. Here a
connection takes the process's lock where SQLite takes its write lock (the first statement
that writes) and gives it back once its transaction has ended, so the next writer starts at
once. Writers in other processes still meet the busy handler, as before.

The lock is only a queue in front of SQLite's own: a writer that waits longer than the busy
timeout for it goes ahead anyway and SQLite decides, so nothing waits forever on it, and a
second connection written to by the thread that holds it (which SQLite would make wait on the
first) goes straight to SQLite as well.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

# Statements after which SQLite holds its write lock until the transaction ends. One that
# writes behind a WITH is not seen: it meets the busy handler, as every write did before.
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")
# Where a connection (its pool record) notes that it holds the lock.
HOLDS = "digest_sqlite_write_turn"


class WriteTurns:
    """The lock one engine's connections take turns on; `timeout` is SQLite's busy timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._holder: int | None = None  # the thread whose connection holds the lock

    def before_statement(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if HOLDS in conn.info or not statement.lstrip()[:7].upper().startswith(WRITES):
            return
        if self._holder == threading.get_ident():
            return
        if self._lock.acquire(timeout=self.timeout):
            self._holder = threading.get_ident()
            conn.info[HOLDS] = True

    def after(self, end_transaction: Callable[[Any], None]) -> Callable[[Any], None]:
        """The dialect's commit or rollback, giving the lock back once it has returned, so the
        next writer never finds SQLite's lock still held and goes to sleep."""

        def ended(dbapi_connection: Any) -> None:
            try:
                end_transaction(dbapi_connection)
            finally:
                self.release(_info(dbapi_connection))

        return ended

    def dropped(self, dbapi_connection: Any, record: Any, *rest: Any) -> None:
        """A connection invalidated or closed never keeps the lock."""
        self.release(_info(record))

    def release(self, info: dict[Any, Any] | None) -> None:
        if info is not None and info.pop(HOLDS, False):
            self._holder = None
            self._lock.release()


def _info(connection: Any) -> dict[Any, Any] | None:
    """The pool's notes on a connection; None for one the pool does not keep (its first)."""
    try:
        return connection.info
    except (AttributeError, NotImplementedError):
        return None


def take_turns_writing(engine: Engine, busy_timeout: float) -> None:
    """Make the SQLite `engine`'s writers in this process queue for SQLite's write lock."""
    turns = WriteTurns(busy_timeout)
    sa.event.listen(engine, "before_cursor_execute", turns.before_statement)
    # The pool ends a returned connection's transaction through the same dialect methods.
    dialect = engine.dialect
    dialect.do_commit = turns.after(dialect.do_commit)  # type: ignore[method-assign]
    dialect.do_rollback = turns.after(dialect.do_rollback)  # type: ignore[method-assign]
    sa.event.listen(engine.pool, "invalidate", turns.dropped)
    sa.event.listen(engine.pool, "close", turns.dropped)
