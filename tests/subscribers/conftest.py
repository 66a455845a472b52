"""Real databases for the subscriber tests: a SQLite file, and PostgreSQL when it is running."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateSchema, DropSchema

from subscribers import service, tables
from tests.conftest import ON_POSTGRES

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def sqlite_engine(path: Path) -> sa.Engine:
    """A SQLite file with the subscriber tables and foreign keys enforced."""
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _foreign_keys_on(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    tables.metadata.create_all(engine)
    return engine


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sqlite_engine(tmp_path / "subscribers.db")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_db() -> Iterator[sa.Engine]:
    """The subscriber tables in a fresh schema of the `test` database, dropped afterwards."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed")
    server = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    try:
        with server.connect():
            pass
    except sa.exc.OperationalError as error:
        server.dispose()
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {str(error).splitlines()[0]}")
    schema = f"subscribers_test_{uuid.uuid4().hex[:12]}"
    with server.begin() as conn:
        conn.execute(CreateSchema(schema))
    engine = server.execution_options(schema_translate_map={None: schema})
    try:
        tables.metadata.create_all(engine)
        yield engine
    finally:
        with server.begin() as conn:
            conn.execute(DropSchema(schema, cascade=True))
        server.dispose()


@pytest.fixture
def db(request: pytest.FixtureRequest) -> sa.Engine:
    """The subscriber tables on this pass's database (DIGEST_TEST_DATABASE, tests/conftest.py)."""
    return request.getfixturevalue("postgres_db" if ON_POSTGRES else "sqlite_db")


@pytest.fixture
def weekly(db: sa.Engine) -> sa.Engine:
    """A database with the lists `weekly` and `daily`."""
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", title="Weekly News", now=NOW)
        service.ensure_list(conn, "daily", now=NOW)
    return db
