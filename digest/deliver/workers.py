"""Delivery fanned out to Celery workers (a Redis broker at $DIGEST_BROKER_URL).

`digest send ISSUE --workers` queues the audience as any send does, splits the queued outbox
rows into batches, and puts one task per batch on the broker; each `digest worker` process
sends the batches it takes with outbox.send_batch, which claims the rows still queued
(compare-and-set) just before the backend sees them. So any number of workers share a send
without overlap, and a batch run twice sends nobody twice.

Tasks are acknowledged only once done (acks_late) and given back if their worker dies
(reject_on_worker_lost; a worker killed outright leaves them unacknowledged, and Redis hands
them out again after the visibility timeout). The batch run again skips the rows the dead
worker had claimed: they are `sending`, held as unknown exactly as a killed `digest send`
leaves them (the provider's events or `--retry-unknown` settle them).

Workers use their own settings (digest.toml, DIGEST_*): every process of a deployment must
point at the same database; a task carries a hash of the sender's database URL, and a worker
on another database refuses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from celery import Celery, group
from celery.exceptions import TaskRevokedError
from celery.result import GroupResult
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from digest.config import Settings
from digest.deliver.backends import MailBackend, backend_from_url
from digest.deliver.outbox import SendReport, send_batch
from digest.errors import ConfigError, DeliveryError, DigestError
from digest.messages import MessageFactory
from digest.pipeline import DEFAULT_BATCH, finish_send, prepare_send
from digest.store import EDITABLE_STATUSES, Store

log = logging.getLogger(__name__)

TASK = "digest.deliver_batch"
DEFAULT_QUEUE = "digest-delivery"
# A task of a worker killed outright comes back after this many seconds. A batch still
# running then is run twice, which is harmless (its rows are claimed), only wasted.
DEFAULT_VISIBILITY_TIMEOUT = 300.0
# The sender says so once when no batch has been settled for this long.
STALL_WARNING_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Broker:
    url: str
    queue: str = DEFAULT_QUEUE
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT


def broker_from_env(env: Mapping[str, str]) -> Broker:
    """DIGEST_BROKER_URL (required), DIGEST_BROKER_QUEUE, DIGEST_BROKER_VISIBILITY_TIMEOUT."""
    url = env.get("DIGEST_BROKER_URL", "")
    if not url:
        raise ConfigError(
            "DIGEST_BROKER_URL is not set: delivery workers need a Redis broker, "
            "e.g. redis://127.0.0.1:6379/0"
        )
    raw_timeout = env.get("DIGEST_BROKER_VISIBILITY_TIMEOUT", "")
    try:
        timeout = float(raw_timeout) if raw_timeout else DEFAULT_VISIBILITY_TIMEOUT
    except ValueError:
        timeout = -1.0
    if timeout <= 0:
        raise ConfigError(
            f"DIGEST_BROKER_VISIBILITY_TIMEOUT={raw_timeout!r}: must be a number of seconds > 0"
        )
    return Broker(url, env.get("DIGEST_BROKER_QUEUE") or DEFAULT_QUEUE, timeout)


def celery_app(broker: Broker) -> Celery:
    """The Celery app for delivery; the broker (Redis) also keeps the tasks' results."""
    app = Celery("digest", broker=broker.url, backend=broker.url, set_as_current=False)
    transport = {
        "visibility_timeout": broker.visibility_timeout,
        # Workers look for tasks a dead worker left unacknowledged this often (Kombu's
        # default sweep is every 100 s whatever the timeout).
        "unacked_restore_interval": max(1, min(10, round(broker.visibility_timeout / 5))),
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        task_default_queue=broker.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One batch at a time per pool process: a killed worker holds back as little as can be.
        worker_prefetch_multiplier=1,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        result_expires=24 * 3600,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)(deliver_batch)
    return app


def database_tag(url: str) -> str:
    """A task names its database by hash: the URL may hold a password, the broker may not."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


# --- the worker side ---------------------------------------------------------------------


@dataclass
class _Worker:
    """What one pool process keeps between tasks (opened after the fork, in the process)."""

    settings: Settings
    pid: int = 0
    store: Store | None = None
    backend: MailBackend | None = None
    loop: asyncio.AbstractEventLoop | None = None
    factories: dict[int, MessageFactory] = field(default_factory=dict)


_worker: _Worker | None = None


def run_worker(settings: Settings, broker: Broker, *, concurrency: int | None = None) -> None:
    """Start a Celery worker in this process (blocks until it is stopped)."""
    global _worker
    _worker = _Worker(settings)
    backend_from_url(settings.mail_url)  # a wrong mail url fails here, in one line
    argv = ["worker", "--loglevel=INFO", f"--queues={broker.queue}"]
    argv += [f"--hostname=digest-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    celery_app(broker).worker_main(argv)


def _opened() -> _Worker:
    worker = _worker
    if worker is None:
        raise ConfigError("this process is not a `digest worker`; it cannot send batches")
    if worker.pid != os.getpid():  # first task in this pool process: nothing is shared
        worker.pid = os.getpid()
        worker.store = Store.open(worker.settings.database_url)
        worker.backend = backend_from_url(worker.settings.mail_url)
        worker.loop = asyncio.new_event_loop()
        worker.factories = {}
    return worker


def deliver_batch(issue_id: int, after: int, last: int, count: int, database: str) -> dict:
    """Send the issue's rows with ids in (after, last] that are still queued (at most
    `count`); returns how many ended in each state, or {"error": ...}."""
    worker = _opened()
    assert worker.store and worker.backend and worker.loop
    try:
        if database != database_tag(worker.settings.database_url):
            raise ConfigError(
                f"issue {issue_id}: this worker's database is not the sender's; "
                "point DIGEST_DATABASE_URL of every process at the same database"
            )
        factory = worker.factories.get(issue_id) or _factory(worker, issue_id)
        peeked = worker.store.peek_queued(issue_id, count, after=after)
        rows = [row for row in peeked if row.id <= last]
        results = worker.loop.run_until_complete(
            send_batch(worker.store, rows, factory, worker.backend, clock=_utc_now)
        )
    except DigestError as error:
        log.error("issue=%s rows=%d-%d: %s", issue_id, after + 1, last, error)
        return {"error": str(error)}
    states = Counter(result.state for result in results)
    log.info(
        "issue=%s rows=%d-%d batch=%d sent=%d failed=%d unknown=%d",
        issue_id,
        after + 1,
        last,
        len(results),
        states["sent"],
        states["failed"],
        states["unknown"],
    )
    errors = [result.error for result in results if result.error]
    return {**states, "error": errors[-1] if errors else ""}


def _factory(worker: _Worker, issue_id: int) -> MessageFactory:
    assert worker.store
    issue = worker.store.load_issue(issue_id)
    if issue is None:
        raise ConfigError(f"issue {issue_id}: no such issue in this worker's database")
    worker.factories = {issue_id: MessageFactory(worker.settings, issue)}  # one issue at a time
    return worker.factories[issue_id]


def _check_broker(app: Celery, broker: Broker) -> None:
    """One line, at once, when Redis is not there (Celery would retry for a minute)."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
        app.backend.client.ping()
    except (OperationalError, RedisError, OSError) as error:
        raise _broker_error(broker, error, "nothing was sent") from None


def _broker_error(broker: Broker, error: BaseException, outcome: str) -> DeliveryError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DeliveryError(f"broker {_redacted(broker.url)}: {first.rstrip('.')}; {outcome}")


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return url


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- the sender side ---------------------------------------------------------------------


def send_with_workers(
    settings: Settings,
    store: Store,
    issue_id: int,
    broker: Broker,
    *,
    clock: Callable[[], datetime],
    retry_unknown: bool = False,
    batch_size: int | None = None,
    on_progress: Callable[[int], None] = lambda _done: None,
    poll_seconds: float = 0.5,
    from_statuses: Sequence[str] = EDITABLE_STATUSES,
) -> SendReport:
    """send_issue, with the outbox worked through by `digest worker` processes: queue the
    audience, one task per batch of queued rows, wait for all of them. `from_statuses` as
    send_issue's."""
    limits = settings.file.mail.send_limits()
    if limits.rate or limits.domain_rate:
        # Each worker would keep its own buckets: N workers, N times the rate.
        raise ConfigError(
            f"issue {issue_id}: [mail] rate and domain_rate are kept by one sending process; "
            "send without --workers, or set them to 0"
        )
    app = celery_app(broker)
    _check_broker(app, broker)  # before the issue is touched
    prepare_send(
        settings,
        store,
        issue_id,
        clock=clock,
        retry_unknown=retry_unknown,
        from_statuses=from_statuses,
    )
    size = batch_size or getattr(backend_from_url(settings.mail_url), "batch_size", DEFAULT_BATCH)
    ids = store.queued_ids(issue_id)
    tag = database_tag(settings.database_url)
    batches = [ids[start : start + size] for start in range(0, len(ids), size)]
    tasks = [app.signature(TASK, args=(issue_id, b[0] - 1, b[-1], len(b), tag)) for b in batches]
    try:
        result: GroupResult = group(tasks, app=app).apply_async()
    except (OperationalError, RedisError, RuntimeError) as error:  # Redis went away meanwhile
        raise _broker_error(broker, error, "the issue's readers stay queued") from None
    log.info("issue=%s: %d rows in %d batches for the workers", issue_id, len(ids), len(batches))
    watch = _Watch(pause_after=limits.pause_after, on_progress=on_progress)

    def settled(_task_id: str, value: object) -> None:
        if watch.take(value) and not watch.revoked:
            # The tasks not started yet are dropped; their rows stay queued for the next run.
            watch.revoked = True
            result.revoke()

    # The results come from Redis as the batches finish (its result backend publishes
    # them): polling the outbox's counts instead cost PostgreSQL a scan of the issue's rows
    # a poll, which slowed a 1M send down.
    if tasks:  # (Celery's wait cannot wait for nothing)
        result.join_native(
            propagate=False, interval=poll_seconds, callback=settled, on_interval=watch.tick
        )
        result.forget()
    counts = store.outbox_counts(issue_id)
    report = SendReport(
        issue_id=issue_id,
        sent=counts["sent"],
        failed=counts["failed"],
        unknown=counts["unknown"] + counts["sending"],
        queued=counts["queued"],
        last_error=watch.errors[-1] if watch.errors else "",
        paused=watch.pause_reason() if watch.revoked else "",
    )
    finish_send(store, report, now=clock())
    return report


@dataclass
class _Watch:
    """The sender's view of a fanned-out send, from the batches' results as they come:
    progress, a stall, and failures with nothing sent meanwhile (`pause_after`)."""

    pause_after: int
    on_progress: Callable[[int], None]
    revoked: bool = False
    done: int = 0
    failed_run: int = 0
    errors: list[str] = field(default_factory=list)
    moved: float = field(default_factory=time.monotonic)
    warned: bool = False

    def take(self, value: object) -> bool:
        """One batch's result; True when the send should pause."""
        self.moved = time.monotonic()
        counts = value if isinstance(value, dict) else {}
        if error := _error_of(value):
            self.errors.append(error)
        sent, failed = int(counts.get("sent", 0)), int(counts.get("failed", 0))
        self.failed_run = failed if sent else self.failed_run + failed
        self.done += sent + failed + int(counts.get("unknown", 0))
        self.on_progress(self.done)
        return bool(self.pause_after) and self.failed_run >= self.pause_after

    def tick(self) -> None:
        if not self.warned and time.monotonic() - self.moved > STALL_WARNING_SECONDS:
            self.warned = True
            log.warning(
                "no batch finished for %.0f s; is a `digest worker` running with the same "
                "DIGEST_BROKER_URL and DIGEST_BROKER_QUEUE?",
                STALL_WARNING_SECONDS,
            )

    def pause_reason(self) -> str:
        last = self.errors[-1] if self.errors else ""
        return (
            f"{self.failed_run} messages failed with none sent meanwhile; the last: {last}. "
            "Fix the cause, then send again to go on."
        )


def _error_of(value: object) -> str:
    """A batch's error: one it reported, or the first line of one it raised (not a batch the
    sender dropped itself)."""
    if isinstance(value, dict):
        return str(value.get("error") or "")
    if isinstance(value, TaskRevokedError):
        return ""
    if isinstance(value, BaseException):
        first = str(value).splitlines()[0] if str(value) else repr(value)
        return f"a delivery worker failed: {first}"
    return ""
