"""Tests for digest/sqlite_writes.py: SQLite writers of one process take turns on a lock, which
every way a transaction ends gives back, and which never makes anyone wait forever."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from digest.errors import DatabaseError
from digest.store import create_engine

pytestmark = pytest.mark.sqlite("SQLite's single writer")


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (0)")
    yield engine
    engine.dispose()


def count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT max(n) FROM counter").scalar_one()


def test_writers_in_many_threads_all_get_their_turn(engine: sa.Engine) -> None:
    failures: list[BaseException] = []

    def add_many() -> None:
        try:
            for _ in range(25):
                with engine.begin() as conn:
                    conn.exec_driver_sql("UPDATE counter SET n = n + 1")
                    conn.exec_driver_sql("INSERT INTO counter SELECT -1")  # a second write
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=add_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT max(n), count(*) FROM counter").one() == (200, 201)


@pytest.mark.parametrize("end", ["commit", "rollback", "close", "error"])
def test_every_way_a_write_ends_lets_the_next_writer_in_at_once(
    engine: sa.Engine, end: str
) -> None:
    conn = engine.connect()
    conn.exec_driver_sql("UPDATE counter SET n = 1")
    if end == "commit":
        conn.commit()
    elif end == "rollback":
        conn.rollback()
    elif end == "error":
        with pytest.raises(sa.exc.OperationalError):  # our mistake, not the database failing
            conn.exec_driver_sql("INSERT INTO counter VALUES (NULL, 1)")  # one column too many
    conn.close()

    started = time.monotonic()
    done = threading.Event()

    def write() -> None:
        with engine.begin() as other:
            other.exec_driver_sql("UPDATE counter SET n = 2")
        done.set()

    threading.Thread(target=write).start()
    assert done.wait(5), "the next writer is still waiting for the lock"
    assert time.monotonic() - started < 2  # not the 10 s a lost turn would cost
    assert count(engine) == 2


def test_a_thread_writing_on_two_connections_meets_sqlite_not_a_deadlock(
    engine: sa.Engine,
) -> None:
    def short_busy_timeout(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[attr-defined]

    sa.event.listen(engine, "connect", short_busy_timeout)
    engine.dispose()
    with engine.begin() as first:
        first.exec_driver_sql("UPDATE counter SET n = 1")
        with (
            pytest.raises(DatabaseError, match="database is locked"),
            engine.begin() as second,
        ):
            second.exec_driver_sql("UPDATE counter SET n = 2")
    assert count(engine) == 1
