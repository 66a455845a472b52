"""Sending an issue through the outbox: every recipient at most once, resumable after a crash.

Rows are written before anything is sent (Store.queue_recipients). Each batch is read and its
messages built while the batch before it is with the backend; it is claimed (queued → sending)
in one transaction just before the backend sees it, and settled after. So a crash at any point
leaves a row either `queued` (never attempted: sent on resume) or `sending`/`unknown` (maybe
sent: held for the operator, never sent again blindly).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from digest.deliver.backends import MailBackend
from digest.deliver.limits import SendLimits, Throttle
from digest.errors import DatabaseError, DeliveryError
from digest.models import OutgoingMessage, SendResult
from digest.store import OutboxRow, Store

log = logging.getLogger(__name__)

# Transient refusals (SMTP 4xx, a server that is down) are retried this many times per batch.
TRANSIENT_RETRIES = 3
# Recording a batch's results is tried this many more times when the database fails.
RECORD_RETRIES = TRANSIENT_RETRIES
# Waiting longer than this for a provider's Retry-After is left to the next run.
MAX_RETRY_AFTER = 300.0


NO_LIMITS = SendLimits()


@dataclass(frozen=True, slots=True)
class SendReport:
    issue_id: int
    sent: int
    failed: int
    unknown: int
    queued: int  # still owed: a transient problem stopped the run; sending again resumes
    last_error: str = ""
    paused: str = ""  # why the send paused itself, if it did (sending again resumes)

    def to_json(self) -> dict[str, int | str]:
        return {
            "issue_id": self.issue_id,
            "sent": self.sent,
            "failed": self.failed,
            "unknown": self.unknown,
            "queued": self.queued,
            "paused": self.paused,
        }


MessageFactory = Callable[[OutboxRow], OutgoingMessage]


async def deliver_issue(
    store: Store,
    issue_id: int,
    make_message: MessageFactory,
    backend: MailBackend,
    *,
    clock: Callable[[], datetime],
    batch_size: int = 100,
    retry_delay: float = 2.0,
    limits: SendLimits = NO_LIMITS,
    on_progress: Callable[[int], None] = lambda _done: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> SendReport:
    """Send every queued row of the issue; returns the issue's outbox counts afterwards.

    `sleep` and `monotonic` are the clock the rate limits and retries wait on.
    """
    last_error = ""
    paused = ""
    done = 0
    failed_in_a_row = 0
    throttle = Throttle(limits)
    # While a batch is with the backend, the next one is read and its messages are built in a
    # worker thread; its rows are claimed (queued → sending) only when it is handed over, so
    # a crash never leaves rows `sending` that no backend saw.
    upcoming = await asyncio.to_thread(_next_batch, store, issue_id, batch_size, 0, make_message)
    while upcoming is not None:
        rows, messages = upcoming
        wait = throttle.delay([row.email for row in rows], monotonic())
        if wait > 0:
            await sleep(wait)
        claimed = store.claim_rows([row.id for row in rows], now=clock())
        sending = asyncio.create_task(
            _send_claimed(store, messages, claimed, backend, clock, retry_delay, sleep)
        )
        try:
            upcoming = await asyncio.to_thread(
                _next_batch, store, issue_id, batch_size, rows[-1].id, make_message
            )
        except Exception:
            # Building the next batch failed: settle the batch in flight, then report.
            await sending
            raise
        results = await sending
        settled = [r for r in results if r.state != "queued"]
        done += len(settled)
        on_progress(done)
        errors = [r.error for r in results if r.error]
        last_error = errors[-1] if errors else last_error
        log.info(
            "issue=%s batch=%d sent=%d failed=%d unknown=%d",
            issue_id,
            len(results),
            sum(r.state == "sent" for r in results),
            sum(r.state == "failed" for r in results),
            sum(r.state == "unknown" for r in results),
        )
        if len(settled) < len(results):
            log.warning("issue=%s stopping: backend is refusing for now: %s", issue_id, last_error)
            break
        failed_in_a_row = _failures_in_a_row(failed_in_a_row, results)
        if limits.pause_after and failed_in_a_row >= limits.pause_after:
            paused = (
                f"{failed_in_a_row} messages in a row failed; the last: {last_error}. "
                "Fix the cause, then send again to go on."
            )
            log.warning("issue=%s paused: %s", issue_id, paused)
            break
    counts = store.outbox_counts(issue_id)
    return SendReport(
        issue_id=issue_id,
        sent=counts["sent"],
        failed=counts["failed"],
        unknown=counts["unknown"] + counts["sending"],
        queued=counts["queued"],
        last_error=last_error,
        paused=paused,
    )


Batch = tuple[list[OutboxRow], list[OutgoingMessage]]


async def send_batch(
    store: Store,
    rows: Sequence[OutboxRow],
    make_message: MessageFactory,
    backend: MailBackend,
    *,
    clock: Callable[[], datetime],
    retry_delay: float = 2.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[SendResult]:
    """Send one batch of rows on its own (a delivery worker's share of a send): build the
    messages, claim the rows still queued (queued → sending), send, settle.

    A row another sender claimed or settled meanwhile is skipped, so running the same batch
    twice (a broker redelivering it after a worker died) sends nobody twice: the dead
    worker's rows are `sending` and stay held as unknown.
    """
    messages = [make_message(row) for row in rows]
    claimed = store.claim_rows([row.id for row in rows], now=clock())
    return await _send_claimed(store, messages, claimed, backend, clock, retry_delay, sleep)


async def _send_claimed(
    store: Store,
    messages: list[OutgoingMessage],
    claimed: set[int],
    backend: MailBackend,
    clock: Callable[[], datetime],
    retry_delay: float,
    sleep: Callable[[float], Awaitable[None]],
) -> list[SendResult]:
    """Send the messages of the claimed rows and record the results."""
    messages = [m for m in messages if int(m.delivery_id) in claimed]
    sending = asyncio.create_task(_send_with_retries(backend, messages, clock, retry_delay, sleep))
    return await _settle(store, sending, claimed, clock, retry_delay, sleep)


def _next_batch(
    store: Store, issue_id: int, size: int, after: int, make_message: MessageFactory
) -> Batch | None:
    """The next queued rows after row `after` and their messages; None when none is left."""
    rows = store.peek_queued(issue_id, size, after=after)
    return (rows, [make_message(row) for row in rows]) if rows else None


async def _settle(
    store: Store,
    sending: asyncio.Task[list[SendResult]],
    claimed: set[int],
    clock: Callable[[], datetime],
    retry_delay: float,
    sleep: Callable[[float], Awaitable[None]],
) -> list[SendResult]:
    """Wait for the batch in flight and record its results."""
    try:
        results = await sending
    except DeliveryError:
        # The backend refused before taking any message (e.g. a wrong SMTP password).
        store.release(sorted(claimed), now=clock())
        raise
    await _record(store, results, clock, retry_delay, sleep)
    return results


async def _record(
    store: Store,
    results: list[SendResult],
    clock: Callable[[], datetime],
    retry_delay: float,
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """Record what the backend answered. Its messages are out, and rows left `sending` are
    held as unknown, so a database that is locked or briefly gone (a restart, a failover) is
    waited for; if it stays away, the error says the batch went out unrecorded."""
    if not results:
        return
    for attempt in range(RECORD_RETRIES + 1):
        try:
            store.record_results(results, now=clock())
            return
        except DatabaseError as error:
            rows = sorted(int(result.delivery_id) for result in results)
            if attempt == RECORD_RETRIES:
                # They stay `sending` in the outbox: that is where to find them.
                log.error(
                    "results not recorded rows=%d-%d (%d): %s", rows[0], rows[-1], len(rows), error
                )
                raise DatabaseError(
                    error.database,
                    f"{error.reason}; the outcome of the {len(rows)} messages just handed to the "
                    "mail backend is not recorded: they are held as unknown",
                ) from error
            log.warning("recording results again rows=%d-%d: %s", rows[0], rows[-1], error)
            await sleep(retry_delay * 2**attempt)


def _failures_in_a_row(before: int, results: Sequence[SendResult]) -> int:
    """The run of failed messages at the end of `results`, continuing one of `before`."""
    run = before
    for result in results:
        run = run + 1 if result.state == "failed" else 0
    return run


async def _send_with_retries(
    backend: MailBackend,
    messages: list[OutgoingMessage],
    clock: Callable[[], datetime],
    retry_delay: float,
    sleep: Callable[[float], Awaitable[None]],
) -> list[SendResult]:
    """Retry only the messages the backend said were not taken (state `queued`), waiting
    longer each time, and at least as long as the provider's Retry-After asked."""
    if not messages:
        return []  # another sender claimed the whole batch first
    pending = messages
    final: list[SendResult] = []
    for attempt in range(TRANSIENT_RETRIES + 1):
        results = await backend.send(pending, date=clock())
        final.extend(r for r in results if r.state != "queued")
        deferred = {r.delivery_id: r for r in results if r.state == "queued"}
        if not deferred:
            return final
        if attempt == TRANSIENT_RETRIES:
            return final + list(deferred.values())
        pending = [m for m in pending if m.delivery_id in deferred]
        asked = max(result.retry_after for result in deferred.values())
        if asked > MAX_RETRY_AFTER:
            return final + list(deferred.values())
        await sleep(max(retry_delay * 2**attempt, asked))
    return final
