"""Faults in the middle of a send, on real parts: the database locked or gone while results are
recorded, the disk full while the outbox is written, a mail server that drops the line during
DATA. Each stops with one clear line (or rides the fault out), sends nobody a message twice
unless the operator asks for it, and a later run finishes what is owed."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from typer.testing import CliRunner

from digest.cli import app
from digest.config import Settings, parse_settings
from digest.deliver.file import FileBackend
from digest.deliver.outbox import RECORD_RETRIES, deliver_issue
from digest.deliver.smtp import SmtpBackend
from digest.errors import DatabaseError, DigestError
from digest.models import OutgoingMessage, SendResult
from digest.pipeline import send_issue
from digest.store import OutboxRow, Store
from digest.tables import outbox
from subscribers.service import add_subscriber, ensure_list
from tests.conftest import ON_POSTGRES, POSTGRES_SERVER_URL, MailSink, free_port
from tests.deliver.test_message import random_variant, shared_message
from tests.deliver.test_outbox import NOW, clock, delivered, make_message, queued_issue, readers
from tests.render.sample_issue import sample_issue

SECRET = "fault-test-secret"
# Short enough that a test waits little for a lock, long enough that SQLite really waits.
BUSY_MS = 100


async def no_wait(_seconds: float) -> None:
    """The retries' clock: no real waiting in these tests."""


def outbox_states(store: Store, issue_id: int) -> dict[int, str]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(outbox.c.id, outbox.c.state).where(outbox.c.issue_id == issue_id)
        )
        return dict(rows.all())


def copies(folder: Path) -> Counter[str]:
    """How many messages the file backend wrote to each reader."""
    return Counter(delivered(folder))


class FaultAfterBatch:
    """The real file backend; when batch number `after` has been written, `fault()` strikes,
    before the sender can record that batch's results."""

    def __init__(self, inner: FileBackend, after: int, fault: Callable[[], None]) -> None:
        self.inner = inner
        self.after = after
        self.fault = fault
        self.batches = 0

    async def send(self, batch: Sequence[OutgoingMessage], *, date: datetime) -> list[SendResult]:
        results = await self.inner.send(batch, date=date)
        self.batches += 1
        if self.batches == self.after:
            self.fault()
        return results


def wait_briefly_for_locks(store: Store) -> None:
    """The store's SQLite connections wait BUSY_MS for another writer, not the usual 10 s."""

    def busy_timeout(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout={BUSY_MS}")

    sa.event.listen(store.engine, "connect", busy_timeout)
    store.engine.dispose()


class Locker:
    """Another process's connection holding SQLite's write lock (BEGIN IMMEDIATE)."""

    def __init__(self, store: Store) -> None:
        path = store.engine.url.database
        assert path is not None
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.held = False

    def lock(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")
        self.held = True

    def unlock(self) -> None:
        if self.held:
            self.connection.execute("ROLLBACK")
            self.held = False

    def close(self) -> None:
        self.unlock()
        self.connection.close()


# --- the database locked while results are recorded (SQLite) ---------------------------------


@pytest.mark.sqlite("SQLite's write lock and busy timeout")
async def test_a_database_locked_past_every_retry_stops_the_send_and_a_rerun_finishes(
    store: Store, tmp_path: Path
) -> None:
    wait_briefly_for_locks(store)
    issue_id = queued_issue(store, readers(10))
    locker = Locker(store)
    folder = tmp_path / "out"
    backend = FaultAfterBatch(FileBackend(folder), after=2, fault=locker.lock)
    try:
        with pytest.raises(DatabaseError) as stopped:
            await deliver_issue(
                store, issue_id, make_message, backend, clock=clock, batch_size=4, sleep=no_wait
            )
        message = str(stopped.value)
        # One line naming the database and what went wrong, and what became of the batch.
        assert "\n" not in message
        assert message.startswith(f"database sqlite:///{store.engine.url.database}: ")
        assert "database is locked" in message
        assert "4 messages" in message and "held as unknown" in message
        assert isinstance(stopped.value, DigestError)  # the CLI shows it as one red line
        # Batch 1 recorded; batch 2 went out but is not recorded: held, never sent again
        # blindly; the rest was never claimed.
        assert (
            sorted(outbox_states(store, issue_id).values())
            == ["queued"] * 2 + ["sending"] * 4 + ["sent"] * 4
        )
        assert copies(folder) == Counter(readers(8))
    finally:
        locker.close()

    report = await deliver_issue(
        store, issue_id, make_message, FileBackend(folder), clock=clock, batch_size=4
    )

    assert (report.sent, report.unknown, report.queued, report.failed) == (6, 4, 0, 0)
    assert copies(folder) == Counter(readers(10))  # everyone once, nobody twice


@pytest.mark.sqlite("SQLite's write lock and busy timeout")
async def test_a_database_locked_for_a_while_is_waited_for_and_the_send_completes(
    store: Store, tmp_path: Path
) -> None:
    wait_briefly_for_locks(store)
    issue_id = queued_issue(store, readers(10))
    locker = Locker(store)
    waits: list[float] = []

    async def unlock_while_waiting(seconds: float) -> None:
        waits.append(seconds)
        locker.unlock()  # the other writer finishes while the sender waits to record again

    folder = tmp_path / "out"
    backend = FaultAfterBatch(FileBackend(folder), after=2, fault=locker.lock)
    try:
        report = await deliver_issue(
            store,
            issue_id,
            make_message,
            backend,
            clock=clock,
            batch_size=4,
            retry_delay=0.5,
            sleep=unlock_while_waiting,
        )
    finally:
        locker.close()

    assert (report.sent, report.unknown, report.queued) == (10, 0, 0)
    assert waits == [0.5]  # one wait: the first record failed after BUSY_MS, the second held
    assert set(outbox_states(store, issue_id).values()) == {"sent"}
    assert copies(folder) == Counter(readers(10))


# --- the database gone while results are recorded (PostgreSQL) -------------------------------


class PostgresFaults:
    """Faults a PostgreSQL administrator can cause to the test's own database."""

    def __init__(self, store: Store) -> None:
        self.name = store.engine.url.database
        self.server = sa.create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")

    def terminate_connections(self) -> None:
        with self.server.connect() as connection:
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": self.name},
            )

    def allow_connections(self, allowed: bool) -> None:
        with self.server.connect() as connection:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'
            )

    def go_away(self) -> None:
        """The database stops taking connections and drops those it has."""
        self.allow_connections(False)
        self.terminate_connections()

    def close(self) -> None:
        self.allow_connections(True)
        self.server.dispose()


postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="the PostgreSQL pass's faults")


@postgres_only
async def test_a_database_gone_mid_send_stops_it_and_a_rerun_finishes(
    store: Store, tmp_path: Path
) -> None:
    issue_id = queued_issue(store, readers(10))
    faults = PostgresFaults(store)
    folder = tmp_path / "out"
    attempts: list[float] = []

    async def count_waits(seconds: float) -> None:
        attempts.append(seconds)

    backend = FaultAfterBatch(FileBackend(folder), after=2, fault=faults.go_away)
    try:
        with pytest.raises(DatabaseError) as stopped:
            await deliver_issue(
                store, issue_id, make_message, backend, clock=clock, batch_size=4, sleep=count_waits
            )
        message = str(stopped.value)
        assert "\n" not in message
        assert message.startswith(f"database {store.engine.url.render_as_string()}: ")
        assert "held as unknown" in message
        assert len(attempts) == RECORD_RETRIES  # it waited for the database between tries
        assert copies(folder) == Counter(readers(8))
    finally:
        faults.allow_connections(True)
        faults.close()

    assert (
        sorted(outbox_states(store, issue_id).values())
        == ["queued"] * 2 + ["sending"] * 4 + ["sent"] * 4
    )
    report = await deliver_issue(
        store, issue_id, make_message, FileBackend(folder), clock=clock, batch_size=4
    )
    assert (report.sent, report.unknown, report.queued) == (6, 4, 0)
    assert copies(folder) == Counter(readers(10))


@postgres_only
async def test_connections_dropped_mid_send_are_made_again_and_the_send_completes(
    store: Store, tmp_path: Path
) -> None:
    """A restarted database (every connection terminated, new ones welcome) costs nothing."""
    issue_id = queued_issue(store, readers(10))
    faults = PostgresFaults(store)
    folder = tmp_path / "out"
    backend = FaultAfterBatch(FileBackend(folder), after=2, fault=faults.terminate_connections)
    try:
        report = await deliver_issue(
            store, issue_id, make_message, backend, clock=clock, batch_size=4, sleep=no_wait
        )
    finally:
        faults.close()

    assert (report.sent, report.unknown, report.queued) == (10, 0, 0)
    assert copies(folder) == Counter(readers(10))


# --- the disk full while the outbox is written (SQLite) --------------------------------------

CONFIG = """version = 1
name = "Fault News"
base_url = "https://news.example.org"
database_url = "{database_url}"

[mail]
url = "file://{outbox}"
sender = "Fault News <news@example.org>"

[[digests]]
name = "weekly"
title = "The Weekly"
list = "weekly"
"""


def project(tmp_path: Path, store: Store, count: int) -> tuple[Settings, int]:
    """digest.toml on the store's database, `count` readers on the list, and an issue for
    them; the settings and the issue's id."""
    text = CONFIG.format(database_url=store.engine.url, outbox=tmp_path / "out")
    (tmp_path / "digest.toml").write_text(text, encoding="utf-8")
    settings = parse_settings(text, tmp_path / "digest.toml", {"DIGEST_SECRET_KEY": SECRET})
    with store.transaction() as connection:
        ensure_list(connection, "weekly", title="The Weekly", now=NOW)
        for address in readers(count):
            add_subscriber(connection, address, list_name="weekly", consent="test", now=NOW)
    issue = replace(sample_issue(5), digest="weekly", period_key="faults")
    store.save_articles([a for section in issue.sections for a in section.articles], now=NOW)
    saved, _created = store.save_issue(issue)
    assert saved.id is not None
    return settings, saved.id


class DiskSpace:
    """SQLite's page limit on the store's connections: `fill()` leaves no room to grow."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pages: int | None = None
        sa.event.listen(store.engine, "connect", self._limit)

    def _limit(self, dbapi_connection: sqlite3.Connection, _record: object) -> None:
        if self.pages is not None:
            dbapi_connection.execute(f"PRAGMA max_page_count={self.pages}")

    def fill(self) -> None:
        with self.store.engine.connect() as connection:
            self.pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
        self.store.engine.dispose()

    def free(self) -> None:
        self.pages = None
        self.store.engine.dispose()


@pytest.mark.sqlite("SQLite's max_page_count stands in for a full disk")
def test_a_full_disk_while_queueing_sends_nothing_and_the_next_send_does_it_all(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, issue_id = project(tmp_path, store, 60)
    backend = FileBackend(tmp_path / "out")
    disk = DiskSpace(store)
    disk.fill()

    with pytest.raises(DatabaseError) as stopped:
        asyncio.run(send_issue(settings, store, issue_id, backend, clock=clock))

    message = str(stopped.value)
    assert "\n" not in message
    assert message == f"database sqlite:///{store.engine.url.database}: database or disk is full"
    # The rows are written in one transaction: none of them, and nobody was sent anything.
    assert outbox_states(store, issue_id) == {}
    assert copies(tmp_path / "out") == Counter()
    assert store.issue_status(issue_id) == "sending"

    # Space returns; the operator runs the command again.
    disk.free()
    monkeypatch.setenv("DIGEST_SECRET_KEY", SECRET)
    config = ["--config", str(tmp_path / "digest.toml")]
    again = CliRunner().invoke(app, [*config, "send", str(issue_id), "--json"])

    assert again.exit_code == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["sent"], report["unknown"], report["queued"], report["failed"]) == (60, 0, 0, 0)
    assert copies(tmp_path / "out") == Counter(readers(60))
    assert store.issue_status(issue_id) == "sent"


async def test_a_full_disk_under_the_file_backend_delays_those_messages_not_fails_them(
    store: Store, tmp_path: Path
) -> None:
    """The file backend's folder fills up (the kernel's ENOSPC, from /dev/full) while two
    messages are written: they wait for the retry and go then; nothing fails, nobody twice."""
    everyone = readers(6)
    issue_id = queued_issue(store, everyone)
    folder = tmp_path / "out"
    folder.mkdir()
    with store.engine.connect() as connection:
        rows = dict(connection.execute(sa.select(outbox.c.email, outbox.c.id)).all())
    # The backend writes each message beside its final name first: for these two, that name
    # leads to a device that is always full. The failed write removes it: space returns.
    for address in (everyone[1], everyone[4]):
        (folder / f"{rows[address]}-{address}.eml.tmp").symlink_to("/dev/full")
    waits: list[float] = []

    async def count_waits(seconds: float) -> None:
        waits.append(seconds)

    report = await deliver_issue(
        store, issue_id, make_message, FileBackend(folder), clock=clock, sleep=count_waits
    )

    assert (report.sent, report.failed, report.unknown, report.queued) == (6, 0, 0, 0)
    assert len(waits) == 1  # one retry, for the two
    assert copies(folder) == Counter(everyone)


def wordy_readers(count: int) -> list[str]:
    domain = ".".join(["a" * 60, "b" * 60, "c" * 60, "example.com"])
    return [f"reader{n}@{domain}" for n in range(1, count + 1)]


@pytest.mark.sqlite("SQLite's max_page_count stands in for a full disk")
async def test_a_full_disk_while_recording_holds_that_batch_and_a_rerun_finishes(
    store: Store, tmp_path: Path
) -> None:
    # Long addresses make long provider ids (the files' names): recording them needs pages.
    issue_id = queued_issue(store, wordy_readers(120))
    folder = tmp_path / "out"
    disk = DiskSpace(store)
    backend = FaultAfterBatch(FileBackend(folder), after=2, fault=disk.fill)

    with pytest.raises(DatabaseError) as stopped:
        await deliver_issue(
            store, issue_id, make_message, backend, clock=clock, batch_size=40, sleep=no_wait
        )

    assert "database or disk is full" in str(stopped.value)
    assert "40 messages" in str(stopped.value)
    # Batch 1 recorded; batch 2 went out, unrecorded, held; batch 3 never claimed.
    states = Counter(outbox_states(store, issue_id).values())
    assert states == Counter({"sent": 40, "sending": 40, "queued": 40})
    assert copies(folder) == Counter(wordy_readers(80))

    disk.free()
    report = await deliver_issue(
        store, issue_id, make_message, FileBackend(folder), clock=clock, batch_size=40
    )

    assert (report.sent, report.unknown, report.queued) == (80, 40, 0)
    assert copies(folder) == Counter(wordy_readers(120))


# --- a mail server that drops the line during DATA --------------------------------------------


class DroppingSink(MailSink):
    """Drops the line once per listed reader: `cut` at the end of DATA before it takes the
    message, `lost` after it took it (the reply never reaches the sender), `early` at RCPT,
    before any of the message was sent."""

    def __init__(self, cut: set[str], lost: set[str], early: set[str] = frozenset()) -> None:
        super().__init__()
        self.cut, self.lost, self.early = set(cut), set(lost), set(early)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.early:
            self.early.discard(address)
            assert server.transport is not None
            server.transport.abort()
            return "250 OK"  # never heard
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        (address,) = envelope.rcpt_tos
        if address in self.cut | self.lost:
            took = address in self.lost
            self.cut.discard(address)
            self.lost.discard(address)
            if took:
                await super().handle_DATA(server, session, envelope)
            assert server.transport is not None
            server.transport.abort()
            return "250 OK"  # never heard: the line is gone
        return await super().handle_DATA(server, session, envelope)

    def message_ids(self) -> Counter[str]:
        found = Counter()
        for message in self.received:
            for line in message.data.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    found[line.split(b":", 1)[1].strip().decode()] += 1
        return found


async def test_a_line_dropped_during_data_holds_those_readers_and_the_rest_go(
    store: Store,
) -> None:
    everyone = readers(12)
    cut, lost = {everyone[2], everyone[7]}, {everyone[4]}
    sink = DroppingSink(cut, lost)
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        issue_id = queued_issue(store, everyone)
        backend = SmtpBackend(host="127.0.0.1", port=controller.port, timeout=5)

        report = await deliver_issue(
            store, issue_id, make_message, backend, clock=clock, batch_size=5, sleep=no_wait
        )

        # The sender cannot tell a message the server took from one it did not: both unknown.
        assert (report.sent, report.unknown, report.queued, report.failed) == (9, 3, 0, 0)
        arrived = Counter(a for m in sink.received for a in m.rcpt_tos)
        assert arrived == Counter(set(everyone) - cut)
        assert max(sink.message_ids().values()) == 1

        # Sending again sends nobody anything: the three are held, not risked twice.
        again = await deliver_issue(store, issue_id, make_message, backend, clock=clock)
        assert (again.sent, again.unknown) == (9, 3)
        assert len(sink.received) == 10

        # The operator's --retry-unknown sends the three again: the two the server never took
        # arrive once, and the one it took before the line dropped arrives a second time.
        store.requeue(issue_id, ("unknown", "sending"), now=NOW)
        final = await deliver_issue(store, issue_id, make_message, backend, clock=clock)
    finally:
        controller.stop()

    assert (final.sent, final.unknown, final.queued) == (12, 0, 0)
    arrived = Counter(a for m in sink.received for a in m.rcpt_tos)
    assert arrived == Counter(everyone) + Counter(lost)
    ids = sink.message_ids()
    assert len(ids) == 12 and [n for n in ids.values() if n > 1] == [2]


async def test_a_line_dropped_before_data_is_tried_again_in_the_same_send(store: Store) -> None:
    """Before DATA the server cannot have the message: that reader is owed, not held. (Digests
    take the fast path, which knows when the message started; other mail is held as unknown.)"""
    everyone = readers(6)
    sink = DroppingSink(cut=set(), lost=set(), early={everyone[1], everyone[4]})
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        issue_id = queued_issue(store, everyone)
        backend = SmtpBackend(host="127.0.0.1", port=controller.port, timeout=5)
        variant = random_variant(random.Random(6), 1)

        def shared_for(row: OutboxRow) -> OutgoingMessage:  # the fast path, as digests take
            return replace(shared_message(random.Random(row.id), row.id, variant), to=row.email)

        report = await deliver_issue(
            store, issue_id, shared_for, backend, clock=clock, batch_size=6, sleep=no_wait
        )
    finally:
        controller.stop()

    assert (report.sent, report.unknown, report.queued, report.failed) == (6, 0, 0, 0)
    assert Counter(a for m in sink.received for a in m.rcpt_tos) == Counter(everyone)
