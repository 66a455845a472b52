"""The product sentence as code: fetch sources, build an issue, render it, send it.

Each step takes the settings, the store and the time from its caller, and returns a report;
the CLI, the web app and the scheduler all call these and nothing deeper. digest/messages.py
builds each reader's message; digest/runs.py strings the steps together for `digest run` and
the scheduler's jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest.assemble import (
    Ranking,
    assemble_issue,
    period_key,
    select_window,
    window_start,
)
from digest.config import DigestConfig, Settings, SourceConfig
from digest.deliver.backends import MailBackend
from digest.deliver.message import (
    message_id,
    to_email_message,
)
from digest.deliver.outbox import SendReport, deliver_issue
from digest.embeddings import require_embedder
from digest.errors import ConfigError, DigestError, NothingNew
from digest.ingest.dedupe import dedupe
from digest.messages import MessageFactory, render_context
from digest.models import Issue
from digest.notices import NoticeMailer, NoticeRecipient
from digest.render.environment import template_environment
from digest.render.issue import (
    render_web_version,
)
from digest.store import EDITABLE_STATUSES, SENT_STATUSES, OutboxRow, QueuedRecipient, Store
from digest.topics import group_by_topic
from subscribers.service import audience_for

log = logging.getLogger(__name__)


# --- build -------------------------------------------------------------------------------


def build_issue(
    digest: DigestConfig,
    store: Store,
    *,
    now: datetime,
    sources: Sequence[SourceConfig] = (),
) -> tuple[Issue, bool]:
    """This period's draft issue; (existing issue, False) when the period already has one.

    Articles come from since the digest's last sent issue (at least the configured window),
    less those an earlier issue of the digest already carried. NothingNew when fewer than
    `min_new` remain.
    """
    key = period_key(now, digest.window_length, digest.zone)
    existing = store.find_issue(digest.name, key)
    if existing is not None:
        return existing, False
    start = window_start(now, digest.window_length)
    last_sent = store.last_sent_issue_time(digest.name)
    if last_sent is not None:
        start = min(start, last_sent)
    in_window = select_window(store.articles_between(start, now), start=start, end=now)
    sent = store.already_sent(digest.name, [a.id for a in in_window])
    candidates = dedupe([a for a in in_window if a.id not in sent])
    if len(candidates) < digest.min_new:
        since = f"since {start:%Y-%m-%d %H:%M} UTC"
        message = (
            f"digest {digest.name}: nothing new {since} "
            f"({len(candidates)} new, {len(sent)} already sent, min_new = {digest.min_new}); "
            "no issue built"
        )
        log.info(message)
        raise NothingNew(message)
    embed = require_embedder() if digest.grouping == "embeddings" else None
    sections = group_by_topic(candidates, digest.topic_rules(), embed=embed)
    issue = assemble_issue(
        digest=digest.name,
        title=digest.title,
        sections=sections,
        now=now,
        key=key,
        max_per_section=digest.max_per_section,
        ranking=Ranking(
            window=digest.window_length,
            source_weights={source.name: source.weight for source in sources},
            pins=digest.pin,
            max_items=digest.max_items,
            section_order=digest.section_order,
            editor_topics=tuple(topic.name for topic in digest.topics),
        ),
    )
    return store.save_issue(issue)


# --- render ------------------------------------------------------------------------------


def web_version(settings: Settings, issue: Issue) -> str:
    """The whole issue (every section) as a web page, rendered like its emails."""
    digest = settings.digest(issue.digest)
    return render_web_version(
        issue,
        template=digest.template,
        env=template_environment(settings.templates_dir, locale=digest.locale),
        context=render_context(settings, digest, issue.id),
    )


def published_web_version(settings: Settings, store: Store, issue_id: int) -> str | None:
    """An issue's web version once it has gone out (sending or sent); None before, or if unknown."""
    try:
        if store.issue_status(issue_id) not in SENT_STATUSES:
            return None
    except ConfigError:  # no such issue
        return None
    issue = store.load_issue(issue_id)
    if issue is None or issue.digest not in {digest.name for digest in settings.digests}:
        return None
    return web_version(settings, issue)


def published_pages(
    settings: Settings, store: Store, keep: int = 64
) -> Callable[[int], str | None]:
    """`published_web_version` for the web app, remembering the latest `keep` pages rendered.

    A published issue never changes, so its page is rendered once per process; an issue not
    yet out is asked again next time.
    """
    pages: dict[int, str] = {}

    def page(issue_id: int) -> str | None:
        if issue_id not in pages:
            html = published_web_version(settings, store, issue_id)
            if html is None:
                return None
            if len(pages) >= keep:
                pages.pop(next(iter(pages)))
            pages[issue_id] = html
        return pages[issue_id]

    return page


@dataclass(frozen=True, slots=True)
class PreviewFiles:
    html: Path
    text: Path
    eml: Path
    size_bytes: int
    warnings: tuple[str, ...]
    web: Path | None = None  # the issue's web version ("view in browser"), every section


def preview_issue(
    settings: Settings, issue: Issue, out: Path, *, now: datetime, topics: Sequence[str] = ()
) -> PreviewFiles:
    """Write exactly what a subscriber with this topic choice gets (.html, .txt, .eml), and the
    issue's web version."""
    factory = MessageFactory(settings, issue)
    _variant, rendered = factory.variant(topics)
    if rendered is None:
        raise DigestError(f"issue {issue.id}: no articles for topics {', '.join(topics)}")
    message = factory(
        OutboxRow(
            id=0,
            issue_id=issue.id or 0,
            subscriber_id=0,
            email="preview@" + factory.domain,
            topics=tuple(topics),
            state="preview",
            attempts=0,
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"issue-{issue.id}"
    html_path, text_path, eml_path = (stem.with_suffix(s) for s in (".html", ".txt", ".eml"))
    html_path.write_text(message.html, encoding="utf-8")
    text_path.write_text(message.text, encoding="utf-8")
    eml_path.write_bytes(to_email_message(message, date=now).as_bytes())
    web_path = out / f"issue-{issue.id}-web.html"
    web_path.write_text(web_version(settings, issue), encoding="utf-8")
    return PreviewFiles(
        html=html_path,
        text=text_path,
        eml=eml_path,
        web=web_path,
        size_bytes=rendered.size_bytes,
        warnings=tuple(rendered.warnings),
    )


def preview_notice(
    settings: Settings, notice: str, out: Path, *, now: datetime, digest_name: str | None = None
) -> PreviewFiles:
    """Write a transactional email (confirm, welcome, preferences-changed) as a new subscriber
    of `digest_name`'s list would get it, with working links for a subscriber 0: .html, .txt,
    .eml."""
    digest = settings.digest(digest_name)
    mailer = NoticeMailer(settings)
    recipient = NoticeRecipient(
        subscriber_id=0,
        email=f"preview@{mailer.domain}",
        list_name=digest.list_name,
        topics=tuple(topic.name for topic in digest.topics[:2]),
    )
    message = mailer.message(notice, recipient, now=now)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / notice
    html_path, text_path, eml_path = (stem.with_suffix(s) for s in (".html", ".txt", ".eml"))
    html_path.write_text(message.html, encoding="utf-8")
    text_path.write_text(message.text, encoding="utf-8")
    eml_path.write_bytes(to_email_message(message, date=now).as_bytes())
    rendered = mailer.rendered(notice, recipient)
    return PreviewFiles(
        html=html_path,
        text=text_path,
        eml=eml_path,
        size_bytes=rendered.size_bytes,
        warnings=rendered.warnings,
    )


# --- send --------------------------------------------------------------------------------

# Outbox rows claimed at once when the backend does not say: a crash holds at most this many
# readers as "unknown", and each batch is one transaction to claim and one to settle.
DEFAULT_BATCH = 100


@dataclass(frozen=True, slots=True)
class QueueReport:
    queued: int
    skipped: int  # subscribers whose topics have no article in this issue


def queue_issue(settings: Settings, store: Store, issue: Issue, *, now: datetime) -> QueueReport:
    """Write the outbox rows for everyone on the list (once; a resumed send adds nobody)."""
    assert issue.id is not None
    factory = MessageFactory(settings, issue)
    digest = settings.digest(issue.digest)
    with store.transaction() as connection:
        recipients = audience_for(connection, digest.list_name, cadence=digest.cadence)
    owed: list[QueuedRecipient] = []
    skipped = 0
    for recipient in recipients:
        variant, _rendered = factory.variant(recipient.topics)
        if variant.article_count == 0:
            skipped += 1
            continue
        owed.append(
            QueuedRecipient(
                recipient.subscriber_id,
                recipient.email,
                recipient.topics,
                message_id(factory.domain, issue.id, recipient.subscriber_id),
            )
        )
    return QueueReport(queued=store.queue_recipients(issue.id, owed, now=now), skipped=skipped)


async def send_issue(
    settings: Settings,
    store: Store,
    issue_id: int,
    backend: MailBackend,
    *,
    clock: Callable[[], datetime],
    retry_unknown: bool = False,
    batch_size: int | None = None,
    on_progress: Callable[[int], None] = lambda _done: None,
    from_statuses: Sequence[str] = EDITABLE_STATUSES,
) -> SendReport:
    """Deliver an issue (an operator's send counts as approval); safe to run again.

    `from_statuses`: what the issue may be to start sending (scheduled sends: "approved"
    only, so a draft an editor took back is not sent; DigestError then).

    `batch_size` (outbox rows claimed at once) defaults to the backend's own `batch_size`
    (SendGrid: 1000, one request's worth), else 100.
    """
    issue = prepare_send(
        settings,
        store,
        issue_id,
        clock=clock,
        retry_unknown=retry_unknown,
        from_statuses=from_statuses,
    )
    report = await deliver_issue(
        store,
        issue_id,
        MessageFactory(settings, issue),
        backend,
        clock=clock,
        batch_size=batch_size or getattr(backend, "batch_size", DEFAULT_BATCH),
        limits=settings.file.mail.send_limits(),
        on_progress=on_progress,
    )
    finish_send(store, report, now=clock())
    return report


def prepare_send(
    settings: Settings,
    store: Store,
    issue_id: int,
    *,
    clock: Callable[[], datetime],
    retry_unknown: bool = False,
    from_statuses: Sequence[str] = EDITABLE_STATUSES,
) -> Issue:
    """Everything before the outbox is worked through (send_issue, or delivery workers):
    the issue becomes `sending`, its audience is queued once, and with `retry_unknown` rows
    of unknown outcome are queued again. Returns the issue."""
    if store.load_issue(issue_id) is None:
        raise DigestError(f"issue {issue_id}: no such issue")
    if store.issue_status(issue_id) == "cancelled":
        raise DigestError(f"issue {issue_id} was cancelled; it cannot be sent")
    # Sending first, then read: an editor's save either lands before (and is sent) or is
    # refused. The audience is frozen once: queue_issue adds nobody to an issue with rows, so
    # a crash between the two is mended by the next run.
    started = store.start_sending(issue_id, now=clock(), from_statuses=from_statuses)
    if not started and (status := store.issue_status(issue_id)) in EDITABLE_STATUSES:
        raise DigestError(f"issue {issue_id} is {status}: an editor has it; not sent")
    issue = store.load_issue(issue_id)
    assert issue is not None
    resumed_before_queueing = store.issue_status(
        issue_id
    ) == "sending" and not store.has_outbox_rows(issue_id)
    if started or resumed_before_queueing:
        queue_issue(settings, store, issue, now=clock())
    if retry_unknown:
        store.requeue(issue_id, ("unknown", "sending"), now=clock())
    return issue


def finish_send(store: Store, report: SendReport, *, now: datetime) -> None:
    """An issue nobody is owed any more is `sent`."""
    if report.queued == 0 and store.issue_status(report.issue_id) == "sending":
        store.set_issue_status(report.issue_id, "sent", now=now)


def dry_run_issue(settings: Settings, store: Store, issue_id: int) -> dict[str, int]:
    """Render every variant and count who would get what, without writing or sending."""
    issue = store.load_issue(issue_id)
    if issue is None:
        raise DigestError(f"issue {issue_id}: no such issue")
    factory = MessageFactory(settings, issue)
    with store.transaction() as connection:
        chosen = settings.digest(issue.digest)
        recipients = audience_for(connection, chosen.list_name, cadence=chosen.cadence)
    rendered = [factory.variant(r.topics)[1] for r in recipients]
    return {
        "issue_id": issue_id,
        "recipients": sum(r is not None for r in rendered),
        "skipped": sum(r is None for r in rendered),
        "variants": len({id(r) for r in rendered if r is not None}),
    }
