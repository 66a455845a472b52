"""Real parts shared by the store and delivery tests: databases and an SMTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.store import Store

# A server we may create throwaway databases on; each test gets its own and drops it after.
POSTGRES_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'digest.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (`digest_test_<random>`), dropped afterwards."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed")
    server = sa.create_engine(
        POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2}
    )
    try:
        with server.connect():
            pass
    except sa.exc.OperationalError as error:
        server.dispose()
        reason = str(error.orig).splitlines()[0]
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_SERVER_URL}: {reason}")
    name = f"digest_test_{uuid.uuid4().hex[:12]}"
    with server.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield (
            sa.engine.make_url(POSTGRES_SERVER_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on a SQLite file and on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated store on each backend."""
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
    """

    received: list[Received] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)  # every RCPT address offered

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
        if address.startswith("later"):
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if any(address.startswith("busy") for address in envelope.rcpt_tos):
            return "451 4.3.2 System not accepting messages right now"
        if any(address.startswith("drop") for address in envelope.rcpt_tos):
            # The server took the message, then the line dropped before the client heard so.
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), b""))
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
