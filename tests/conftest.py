"""Real parts shared by the store and delivery tests: databases and an SMTP server on 127.0.0.1.

The suite runs twice in CI: on SQLite, then with DIGEST_TEST_DATABASE=postgres, where every
store the tests open (directly, through digest.toml or a demo folder) is a fresh PostgreSQL
database on 127.0.0.1:5432 instead of its SQLite file. Tests that are about SQLite itself
carry `@pytest.mark.sqlite(reason)` and are skipped in that pass.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

import digest.store
from digest.store import Store

# A server we may create throwaway databases on; each test gets its own and drops it after.
POSTGRES_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Which database this pass runs on: "sqlite" (the default) or "postgres".
TEST_DATABASE = os.environ.get("DIGEST_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
ON_POSTGRES = TEST_DATABASE == "postgres"


def pytest_configure(config: pytest.Config) -> None:
    if TEST_DATABASE not in ("sqlite", "postgres"):
        raise pytest.UsageError(
            f"DIGEST_TEST_DATABASE={TEST_DATABASE!r}: expected 'sqlite' or 'postgres'"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not ON_POSTGRES:
        return
    for item in items:
        marker = item.get_closest_marker("sqlite")
        if marker is not None:
            why = marker.args[0] if marker.args else "about SQLite itself"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))
        elif item.get_closest_marker("nodb") is not None:
            item.add_marker(pytest.mark.skip(reason="opens no database: the SQLite pass ran it"))


@pytest.fixture(autouse=True)
def nodb_opens_no_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked `nodb` is skipped in the PostgreSQL pass, so it must really open no
    store: in the SQLite pass, opening one fails it."""
    if request.node.get_closest_marker("nodb") is None or ON_POSTGRES:
        yield
        return

    def refuse(url: str) -> sa.Engine:
        raise AssertionError(f"marked nodb, but opens a database ({url})")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digest.store, "create_engine", refuse)
        yield


class PostgresDatabases:
    """Throwaway databases (`digest_test_<random>`) on POSTGRES_SERVER_URL, made on demand."""

    def __init__(self) -> None:
        self._server: sa.Engine | None = None
        self._by_path: dict[str, str] = {}  # SQLite file → the database standing in for it
        self._template: str | None = None  # a migrated database the stand-ins are copied from
        self.engines: list[sa.Engine] = []  # engines opened on them, closed after each test

    def server(self) -> sa.Engine:
        if self._server is None:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                pytest.skip("psycopg is not installed")
            server = sa.create_engine(
                POSTGRES_SERVER_URL,
                isolation_level="AUTOCOMMIT",
                connect_args={"connect_timeout": 2},
            )
            try:
                with server.connect():
                    pass
            except sa.exc.OperationalError as error:
                server.dispose()
                reason = str(error.orig).splitlines()[0]
                pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_SERVER_URL}: {reason}")
            self._server = server
        return self._server

    def create(self, *, migrated: bool = False) -> str:
        """A fresh database, empty or (`migrated`) with the store's tables and no rows; its URL."""
        name = f"digest_test_{uuid.uuid4().hex[:12]}"
        # A copy of a migrated template costs a file copy; running the migrations on each
        # database cost a third of a second, hundreds of times a pass.
        template = f' TEMPLATE "{self._migrated_template()}"' if migrated else ""
        with self.server().connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"{template}')
        return _url_of(name)

    def _migrated_template(self) -> str:
        if self._template is None:
            url = self.create()
            engine = sa.create_engine(url)
            try:
                digest.store.migrate(engine)
            finally:
                engine.dispose()  # a template must have no connections when it is copied
            self._template = sa.engine.make_url(url).database
        return self._template

    def drop(self, url: str) -> None:
        name = sa.engine.make_url(url).database
        with self.server().connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def instead_of(self, url: str) -> str:
        """The PostgreSQL database that stands in for a SQLite file URL (others pass through)."""
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return url
        key = str(Path(parsed.database).resolve())
        if key not in self._by_path:
            # Stores open these (migrating them first), so a migrated copy serves.
            self._by_path[key] = self.create(migrated=True)
        return self._by_path[key]

    def close(self) -> None:
        urls = list(self._by_path.values())
        if self._template is not None:
            urls.append(_url_of(self._template))
        # Each DROP DATABASE waits on the server's disk; a few at once overlap the waits.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(self.drop, urls))
        self._by_path.clear()
        if self._server is not None:
            self._server.dispose()


def _url_of(database: str) -> str:
    return (
        sa.engine.make_url(POSTGRES_SERVER_URL)
        .set(database=database)
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    yield databases
    databases.close()


@pytest.fixture(scope="session", autouse=ON_POSTGRES)
def stores_on_postgres(postgres_databases: PostgresDatabases) -> Iterator[PostgresDatabases]:
    """In the PostgreSQL pass, every store opened on a SQLite file opens PostgreSQL instead.

    Store.open goes through digest.store.create_engine, so demo folders, digest.toml files and
    SQLite URLs built by tests all land on a database of their own (one per file).
    """
    original = digest.store.create_engine

    def routed(url: str) -> sa.Engine:
        engine = original(postgres_databases.instead_of(url))
        postgres_databases.engines.append(engine)
        return engine

    global _ROUTED
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digest.store, "create_engine", routed)
        _ROUTED = postgres_databases
        try:
            yield postgres_databases
        finally:
            _ROUTED = None


_ROUTED: PostgresDatabases | None = None


@pytest.fixture(autouse=ON_POSTGRES)
def close_routed_connections(stores_on_postgres: PostgresDatabases) -> Iterator[None]:
    """Close the pooled connections of the test's stores (psycopg warns about any left open)."""
    yield
    kept = []
    for engine in stores_on_postgres.engines:
        engine.dispose()
        # Ours, the loop's and getrefcount's own: an engine nobody else holds is done with.
        if sys.getrefcount(engine) > 3:
            kept.append(engine)
    stores_on_postgres.engines[:] = kept


def database_env(sqlite_url: str) -> dict[str, str]:
    """Environment for a child process to open what this process's stores open for
    `sqlite_url`: in the PostgreSQL pass, DIGEST_DATABASE_URL naming its stand-in."""
    if _ROUTED is None:
        return {}
    return {"DIGEST_DATABASE_URL": _ROUTED.instead_of(sqlite_url)}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'digest.db'}"


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (`digest_test_<random>`), dropped afterwards."""
    url = postgres_databases.create()
    try:
        yield url
    finally:
        postgres_databases.drop(url)


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of this pass: a SQLite file, or PostgreSQL (DIGEST_TEST_DATABASE)."""
    return request.getfixturevalue("postgres_url" if ON_POSTGRES else "sqlite_url")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated store on this pass's database."""
    opened = Store.open(database_url)
    yield opened
    opened.engine.dispose()


# --- a real SMTP server ------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class MailSink:
    """aiosmtpd handler: keeps what it accepts; refuses recipients by their local part.

    `reject…@` gets a permanent 550 at RCPT, `later…@` a transient 451 at RCPT,
    `busy…@` a transient 451 after DATA, `drop…@` loses the connection during DATA.
    With `fault_rate`, any message meets one of those transient faults at that rate (`faults`
    draws them), the dropped line included: the server has the message, the client cannot know.
    """

    received: list[Received] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)  # every RCPT address offered
    fault_rate: float = 0.0
    faults: random.Random = field(default_factory=lambda: random.Random(0))
    dropped: list[str] = field(default_factory=list)  # taken, then the line dropped

    def _fault(self) -> str:
        if self.fault_rate and self.faults.random() < self.fault_rate:
            return self.faults.choice(["later", "busy", "drop"])
        return ""

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.attempts.append(address)
        if address.startswith("reject"):
            return "550 5.1.1 No such user here"
        fault = self._fault()
        if address.startswith("later") or fault == "later":
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._fault()
        if fault == "busy" or any(address.startswith("busy") for address in envelope.rcpt_tos):
            return "451 4.3.2 System not accepting messages right now"
        if fault == "drop" or any(address.startswith("drop") for address in envelope.rcpt_tos):
            # The server took the message, then the line dropped before the client heard so.
            content = envelope.original_content or b""
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), content))
            self.dropped.extend(envelope.rcpt_tos)
            assert server.transport is not None
            server.transport.abort()
            return "250 OK"
        content = envelope.original_content or b""
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 2.0.0 Message accepted for delivery"


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    sink: MailSink


def free_port() -> int:
    """A port nothing listens on right now (aiosmtpd's Controller cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """aiosmtpd on 127.0.0.1, collecting every accepted message in `.sink.received`."""
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(controller.hostname, controller.port, sink)
    finally:
        controller.stop()
