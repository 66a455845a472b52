"""deliver_issue: every recipient at most once, resumable after a crash, on real backends."""

from __future__ import annotations

import email
from collections.abc import Sequence
from datetime import UTC, datetime
from email.policy import default as default_policy
from pathlib import Path

import pytest

from digest.deliver.file import FileBackend
from digest.deliver.message import message_id
from digest.deliver.outbox import TRANSIENT_RETRIES, SendLimits, deliver_issue
from digest.deliver.smtp import SmtpBackend
from digest.errors import DigestError
from digest.models import Issue, OutgoingMessage, SendResult
from digest.store import OutboxRow, QueuedRecipient, Store
from tests.conftest import SmtpServer, free_port

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def make_message(row: OutboxRow) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=str(row.id),
        to=row.email,
        sender="Weekly News <digest@news.example.org>",
        subject=f"Week 10 for subscriber {row.subscriber_id}",
        html="<p>Week 10</p>",
        text="Week 10\n",
        headers={"Message-ID": message_id("news.example.org", row.issue_id, row.subscriber_id)},
    )


def queued_issue(store: Store, emails: Sequence[str]) -> int:
    issue, _created = store.save_issue(Issue("weekly", "2025-W10", "Week 10", NOW, ()))
    assert issue.id is not None
    people = [
        QueuedRecipient(n, address, (), message_id("news.example.org", issue.id, n))
        for n, address in enumerate(emails, start=1)
    ]
    store.queue_recipients(issue.id, people, now=NOW)
    return issue.id


def readers(count: int) -> list[str]:
    return [f"reader{n}@example.com" for n in range(1, count + 1)]


def delivered(folder: Path) -> list[str]:
    """Recipients of every .eml in the folder, one entry per file, sorted."""
    if not folder.exists():
        return []
    return sorted(
        email.message_from_bytes(path.read_bytes(), policy=default_policy)["To"]
        for path in folder.glob("*.eml")
    )


class PowerCut(Exception):
    """The process dies right after the backend handed the batch over."""


class CrashAfterSending:
    """The real file backend, then a crash before the results can be recorded."""

    def __init__(self, inner: FileBackend) -> None:
        self.inner = inner

    async def send(self, batch: Sequence[OutgoingMessage], *, date: datetime) -> list[SendResult]:
        await self.inner.send(batch, date=date)
        raise PowerCut


async def test_every_queued_row_is_sent_once_in_batches(store: Store, tmp_path: Path) -> None:
    issue_id = queued_issue(store, readers(5))
    progress: list[int] = []

    report = await deliver_issue(
        store,
        issue_id,
        make_message,
        FileBackend(tmp_path),
        clock=clock,
        batch_size=2,
        retry_delay=0,
        on_progress=progress.append,
    )

    assert (report.sent, report.failed, report.unknown, report.queued) == (5, 0, 0, 0)
    assert delivered(tmp_path) == readers(5)
    assert progress == [2, 4, 5]
    assert store.outbox_counts(issue_id)["sent"] == 5


async def test_the_message_id_sent_is_recorded_on_the_row(store: Store, tmp_path: Path) -> None:
    issue_id = queued_issue(store, readers(1))
    await deliver_issue(store, issue_id, make_message, FileBackend(tmp_path), clock=clock)

    (path,) = tmp_path.glob("*.eml")
    sent_id = email.message_from_bytes(path.read_bytes(), policy=default_policy)["Message-ID"]
    with store.engine.connect() as connection:
        recorded = connection.exec_driver_sql("SELECT message_id, provider_id FROM outbox").one()
    assert tuple(recorded) == (sent_id, path.name)


async def test_running_again_sends_nothing_more(store: Store, tmp_path: Path) -> None:
    issue_id = queued_issue(store, readers(3))
    backend = FileBackend(tmp_path)
    await deliver_issue(store, issue_id, make_message, backend, clock=clock)
    for path in tmp_path.iterdir():
        path.unlink()

    report = await deliver_issue(store, issue_id, make_message, backend, clock=clock)

    assert report.sent == 3
    assert delivered(tmp_path) == []


async def test_rows_claimed_before_a_crash_are_not_sent_again_until_requeued(
    store: Store, tmp_path: Path
) -> None:
    issue_id = queued_issue(store, readers(5))
    # A previous run claimed two rows and died before recording what happened to them.
    claimed = store.claim_queued(issue_id, 2, now=NOW)
    backend = FileBackend(tmp_path)

    resumed = await deliver_issue(store, issue_id, make_message, backend, clock=clock)

    assert delivered(tmp_path) == readers(5)[2:]
    assert (resumed.sent, resumed.unknown, resumed.queued) == (3, 2, 0)

    # The operator decides (`digest send --retry-unknown`): now, and only now, they are sent.
    assert store.requeue(issue_id, ["unknown", "sending"], now=NOW) == 2
    retried = await deliver_issue(store, issue_id, make_message, backend, clock=clock)

    assert delivered(tmp_path) == readers(5)
    assert (retried.sent, retried.unknown, retried.queued) == (5, 0, 0)
    assert {row.email for row in claimed} == set(readers(2))


async def test_a_crash_while_sending_never_sends_that_batch_twice(
    store: Store, tmp_path: Path
) -> None:
    issue_id = queued_issue(store, readers(5))
    with pytest.raises(PowerCut):
        await deliver_issue(
            store,
            issue_id,
            make_message,
            CrashAfterSending(FileBackend(tmp_path)),
            clock=clock,
            batch_size=2,
        )
    assert store.outbox_counts(issue_id)["sending"] == 2

    resumed = await deliver_issue(
        store, issue_id, make_message, FileBackend(tmp_path), clock=clock, batch_size=2
    )

    assert delivered(tmp_path) == readers(5)  # each reader exactly once
    assert (resumed.sent, resumed.unknown, resumed.queued) == (3, 2, 0)


async def test_a_failing_message_factory_gives_the_rows_back(store: Store, tmp_path: Path) -> None:
    issue_id = queued_issue(store, readers(3))

    def broken(row: OutboxRow) -> OutgoingMessage:
        raise DigestError(f"template broke for {row.email}")

    with pytest.raises(DigestError, match="template broke"):
        await deliver_issue(store, issue_id, broken, FileBackend(tmp_path), clock=clock)

    assert store.outbox_counts(issue_id)["queued"] == 3
    with store.engine.connect() as connection:
        attempts = connection.exec_driver_sql("SELECT attempts FROM outbox").scalars().all()
    assert attempts == [0, 0, 0]
    assert delivered(tmp_path) == []
    # Nothing was attempted, so nothing counts as an attempt; a fixed run sends everyone.
    report = await deliver_issue(store, issue_id, make_message, FileBackend(tmp_path), clock=clock)
    assert report.sent == 3 and delivered(tmp_path) == readers(3)


async def test_a_transient_refusal_is_retried_then_left_queued(
    store: Store, smtp_server: SmtpServer
) -> None:
    issue_id = queued_issue(
        store, ["ann@example.com", "later@example.com", "bob@example.com", "cy@example.com"]
    )
    backend = SmtpBackend(host=smtp_server.host, port=smtp_server.port, timeout=5)

    report = await deliver_issue(
        store, issue_id, make_message, backend, clock=clock, batch_size=2, retry_delay=0
    )

    # The first batch: ann sent, `later` offered 1 + TRANSIENT_RETRIES times; then the run
    # stops instead of hammering a refusing server, and the next batch stays queued.
    assert smtp_server.sink.attempts == ["ann@example.com"] + ["later@example.com"] * (
        1 + TRANSIENT_RETRIES
    )
    assert (report.sent, report.failed, report.unknown, report.queued) == (1, 0, 0, 3)
    assert "451" in report.last_error


async def test_a_permanent_refusal_fails_one_row_and_the_run_goes_on(
    store: Store, smtp_server: SmtpServer
) -> None:
    issue_id = queued_issue(store, ["ann@example.com", "reject@example.com", "bob@example.com"])
    backend = SmtpBackend(host=smtp_server.host, port=smtp_server.port, timeout=5)

    report = await deliver_issue(
        store, issue_id, make_message, backend, clock=clock, batch_size=2, retry_delay=0
    )

    assert (report.sent, report.failed, report.queued) == (2, 1, 0)
    assert "550" in report.last_error
    received = sorted(to for r in smtp_server.sink.received for to in r.rcpt_tos)
    assert received == ["ann@example.com", "bob@example.com"]


async def test_a_server_that_is_down_leaves_everyone_queued(store: Store) -> None:
    issue_id = queued_issue(store, readers(3))
    backend = SmtpBackend(host="127.0.0.1", port=free_port(), timeout=2)

    report = await deliver_issue(
        store, issue_id, make_message, backend, clock=clock, batch_size=2, retry_delay=0
    )

    assert (report.sent, report.unknown, report.queued) == (0, 0, 3)
    assert report.last_error.startswith("smtp 127.0.0.1:")
    assert "\n" not in report.last_error


class Waits:
    """The outbox's clock in these tests: time stands still, and every wait is written down."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.asked.append(round(seconds, 3))

    @staticmethod
    def monotonic() -> float:
        return 0.0


async def test_the_backend_rate_spaces_batches_out(store: Store, tmp_path: Path) -> None:
    issue_id = queued_issue(store, readers(30))
    waits = Waits()
    report = await deliver_issue(
        store,
        issue_id,
        make_message,
        FileBackend(tmp_path),
        clock=clock,
        batch_size=10,
        limits=SendLimits(rate=10),
        sleep=waits.sleep,
        monotonic=waits.monotonic,
    )
    assert report.sent == 30
    # A burst of one second's worth goes at once; each further ten wait a second more.
    assert waits.asked == [1.0, 2.0]


async def test_a_recipient_domain_has_its_own_rate(store: Store, tmp_path: Path) -> None:
    slow = [f"reader{n}@slow.example" for n in range(4)]
    issue_id = queued_issue(store, [*slow, "ann@fast.example", "bob@fast.example"])
    waits = Waits()
    await deliver_issue(
        store,
        issue_id,
        make_message,
        FileBackend(tmp_path),
        clock=clock,
        batch_size=2,
        limits=SendLimits(domain_rate=1),
        sleep=waits.sleep,
        monotonic=waits.monotonic,
    )
    # Rows go out in id order, two a batch, and a batch waits for its slowest message: the slow
    # domain's 2nd, 3rd and 4th wait 1, 2 and 3 s; the fast domain's 2nd waits 1 s, its own.
    assert waits.asked == [1.0, 3.0, 1.0]


async def test_a_run_of_failures_pauses_the_send_and_says_why(
    store: Store, smtp_server: SmtpServer
) -> None:
    refused = [f"reject{n}@example.com" for n in range(5)]
    issue_id = queued_issue(store, [*refused, "ann@example.com", "bob@example.com"])
    backend = SmtpBackend(host=smtp_server.host, port=smtp_server.port, timeout=5)

    report = await deliver_issue(
        store,
        issue_id,
        make_message,
        backend,
        clock=clock,
        batch_size=2,
        retry_delay=0,
        limits=SendLimits(pause_after=3),
    )

    assert report.paused.startswith("4 messages in a row failed; the last:")
    assert "550" in report.paused and report.paused.endswith("send again to go on.")
    assert (report.failed, report.sent, report.queued) == (4, 0, 3)
    resumed = await deliver_issue(
        store, issue_id, make_message, backend, clock=clock, batch_size=2, retry_delay=0
    )
    assert (resumed.failed, resumed.sent, resumed.queued, resumed.paused) == (5, 2, 0, "")


class BusyThenFine:
    """A provider that answers the first attempt with 429 and Retry-After, then takes all."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self.calls = 0

    async def send(self, batch: Sequence[OutgoingMessage], *, date: datetime) -> list[SendResult]:
        self.calls += 1
        state = "queued" if self.calls == 1 else "sent"
        error = "429 Too Many Requests" if self.calls == 1 else ""
        return [
            SendResult(m.delivery_id, state, error=error, retry_after=self.retry_after)  # type: ignore[arg-type]
            for m in batch
        ]


async def test_a_provider_s_retry_after_is_honoured(store: Store) -> None:
    issue_id = queued_issue(store, readers(2))
    waits = Waits()
    report = await deliver_issue(
        store,
        issue_id,
        make_message,
        BusyThenFine(retry_after=7),
        clock=clock,
        retry_delay=1,
        sleep=waits.sleep,
        monotonic=waits.monotonic,
    )
    assert report.sent == 2 and waits.asked == [7.0]


async def test_a_retry_after_too_long_leaves_the_rows_for_the_next_run(store: Store) -> None:
    issue_id = queued_issue(store, readers(2))
    waits = Waits()
    report = await deliver_issue(
        store,
        issue_id,
        make_message,
        BusyThenFine(retry_after=3600),
        clock=clock,
        sleep=waits.sleep,
        monotonic=waits.monotonic,
    )
    assert (report.sent, report.queued) == (0, 2) and waits.asked == []
