"""The product sentence as code: fetch sources, build an issue, render it, send it.

Each step takes the settings, the store and the time from its caller, and returns a report;
the CLI, the web app and the scheduler all call these and nothing deeper.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from digest.assemble import (
    Ranking,
    assemble_issue,
    issue_for_topics,
    period_key,
    select_window,
    variant_key,
    window_start,
)
from digest.collect import FetchReport, fetch_sources
from digest.config import DigestConfig, Settings, SourceConfig
from digest.deliver.backends import MailBackend
from digest.deliver.message import (
    list_id,
    message_id,
    sender_domain,
    to_email_message,
    unsubscribe_headers,
    unsubscribe_mailto,
)
from digest.deliver.outbox import SendReport, deliver_issue
from digest.embeddings import require_embedder
from digest.errors import ConfigError, DigestError, NothingNew
from digest.ingest.dedupe import dedupe
from digest.models import Issue, OutgoingMessage, SharedBody
from digest.notices import PREFERENCES_PATH, UNSUBSCRIBE_PATH, NoticeMailer, NoticeRecipient
from digest.render.environment import template_environment
from digest.render.issue import (
    RenderContext,
    RenderedIssue,
    render_issue,
    render_web_version,
)
from digest.render.markers import PERSONAL_FIELDS
from digest.review import tell_editors
from digest.slots import (
    SendRule,
    due_issues,
    latest_slot,
    parse_send_window,
    schedule_trigger,
    slot_decision,
)
from digest.store import SENT_STATUSES, OutboxRow, QueuedRecipient, Store
from digest.topics import group_by_topic
from subscribers.service import audience_for
from subscribers.tokens import make_preferences_token, make_unsubscribe_token

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


def web_version_url(base_url: str, issue_id: int) -> str:
    """Where `digest serve` shows an issue as a web page ("view in browser")."""
    return f"{base_url}/issues/{issue_id}"


def render_context(
    settings: Settings, digest: DigestConfig, issue_id: int | None = None
) -> RenderContext:
    """What the templates know about the publication, and the web address of issue `issue_id`."""
    return RenderContext(
        publication=settings.file.name,
        base_url=settings.base_url,
        locale=digest.locale,
        timezone=digest.timezone,
        logo_url=settings.file.logo,
        postal_address=settings.file.postal_address,
        web_url=web_version_url(settings.base_url, issue_id) if issue_id is not None else "",
        images=digest.images,
        show_preferences=True,  # `digest serve` answers the preferences links
    )


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


class MessageFactory:
    """Builds each recipient's message; renders once per topic variant, then personalises."""

    def __init__(self, settings: Settings, issue: Issue) -> None:
        assert issue.id is not None
        self.settings = settings
        self.issue = issue
        self.digest = settings.digest(issue.digest)
        self.sender = settings.file.mail.sender
        self.domain = sender_domain(self.sender)
        self.secret = settings.require_secret_key()
        self.env = template_environment(settings.templates_dir, locale=self.digest.locale)
        self.context = render_context(settings, self.digest, issue.id)
        self.list_id = list_id(self.digest.title, self.digest.list_name, self.domain)
        self.reply_to = settings.file.mail.reply_to
        self._variants: dict[tuple[str, ...], RenderedIssue] = {}
        self._shared: dict[tuple[str, ...], tuple[RenderedIssue, SharedBody] | None] = {}

    def variant(self, topics: Sequence[str]) -> tuple[Issue, RenderedIssue | None]:
        """The issue as this topic choice sees it, rendered (None when it would be empty)."""
        key = variant_key(topics)
        issue = issue_for_topics(self.issue, key)
        if issue.article_count == 0:
            return issue, None
        if key not in self._variants:
            rendered = render_issue(
                issue, template=self.digest.template, env=self.env, context=self.context
            )
            for warning in rendered.warnings:  # e.g. over the size Gmail clips at
                topics_shown = ", ".join(key) or "all topics"
                log.warning("issue %s (%s): %s", self.issue.id, topics_shown, warning)
            self._variants[key] = rendered
        return issue, self._variants[key]

    def shared_body(self, topics: Sequence[str]) -> tuple[RenderedIssue, SharedBody] | None:
        """The variant for this exact topic list and its shared body, looked up once per list."""
        choice = tuple(topics)
        if choice not in self._shared:
            _issue, rendered = self.variant(choice)
            self._shared[choice] = (
                None
                if rendered is None
                else (rendered, SharedBody(rendered.nonce, rendered.html, rendered.text))
            )
        return self._shared[choice]

    def personal_values(self, subscriber_id: int, email: str) -> dict[str, str]:
        list_name = self.digest.list_name
        token = make_unsubscribe_token(self.secret, subscriber_id, list_name)
        preferences = make_preferences_token(self.secret, subscriber_id, list_name, email)
        base = self.settings.base_url
        return {
            "unsubscribe_url": base + UNSUBSCRIBE_PATH.format(token=token),
            "preferences_url": base + PREFERENCES_PATH.format(token=preferences),
            "email": email,
            "name": "",
            "token": token,
        }

    def __call__(self, row: OutboxRow) -> OutgoingMessage:
        variant = self.shared_body(row.topics)
        if variant is None:
            raise DigestError(f"issue {self.issue.id}: nothing to send to {row.email}")
        rendered, shared = variant
        values = self.personal_values(row.subscriber_id, row.email)
        headers = {
            "Message-ID": message_id(self.domain, self.issue.id or 0, row.subscriber_id),
            "List-Id": self.list_id,
            **unsubscribe_headers(
                values["unsubscribe_url"], unsubscribe_mailto(self.sender, values["token"])
            ),
        }
        if self.reply_to:
            headers["Reply-To"] = self.reply_to
        # The personalised html and text are made only if the backend reads them.
        return OutgoingMessage(
            delivery_id=str(row.id),
            to=row.email,
            sender=self.sender,
            subject=rendered.subject,
            headers=headers,
            shared=shared,
            personal={field: values[field] for field in PERSONAL_FIELDS if field in values},
        )


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
) -> SendReport:
    """Deliver an issue (an operator's send counts as approval); safe to run again.

    `batch_size` (outbox rows claimed at once) defaults to the backend's own `batch_size`
    (SendGrid: 1000, one request's worth), else 100.
    """
    issue = store.load_issue(issue_id)
    if issue is None:
        raise DigestError(f"issue {issue_id}: no such issue")
    status = store.issue_status(issue_id)
    if status == "cancelled":
        raise DigestError(f"issue {issue_id} was cancelled; it cannot be sent")
    if status in ("draft", "approved"):
        queue_issue(settings, store, issue, now=clock())
        store.set_issue_status(issue_id, "sending", now=clock())
    if retry_unknown:
        store.requeue(issue_id, ("unknown", "sending"), now=clock())
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
    if report.queued == 0 and store.issue_status(issue_id) == "sending":
        store.set_issue_status(issue_id, "sent", now=clock())
    return report


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


# --- run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestRun:
    digest: str
    issue: Issue | None
    created: bool
    sent: SendReport | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class RunReport:
    fetch: FetchReport
    digests: tuple[DigestRun, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "fetch": {
                "found": self.fetch.found,
                "duplicates": self.fetch.duplicates,
                "stored": self.fetch.stored,
                "failed_sources": [s.name for s in self.fetch.failed],
            },
            "digests": [
                {
                    "digest": run.digest,
                    "issue_id": run.issue.id if run.issue else None,
                    "created": run.created,
                    "send": run.sent.to_json() if run.sent else None,
                    "note": run.note,
                }
                for run in self.digests
            ],
        }

    def summary(self) -> str:
        lines = [
            f"fetched {self.fetch.found} articles ({self.fetch.stored} new, "
            f"{len(self.fetch.failed)} sources failed)"
        ]
        for run in self.digests:
            if run.issue is None:
                lines.append(f"{run.digest}: {run.note}")
            elif run.sent is None:
                lines.append(f"{run.digest}: issue {run.issue.id} waits for approval ({run.note})")
            else:
                lines.append(
                    f"{run.digest}: issue {run.issue.id}: {run.sent.sent} sent, "
                    f"{run.sent.failed} failed, {run.sent.unknown} unknown, "
                    f"{run.sent.queued} queued"
                )
        return "\n".join(lines)


async def run_once(
    settings: Settings,
    store: Store,
    backend: MailBackend,
    *,
    clock: Callable[[], datetime],
    digest_name: str | None = None,
) -> RunReport:
    """fetch → build this period's issue → send it when the digest auto-approves."""
    fetched = await fetch_sources(settings, store, clock=clock)
    chosen = [settings.digest(digest_name)] if digest_name else list(settings.digests)
    runs: list[DigestRun] = []
    for digest in chosen:
        try:
            issue, created = build_issue(digest, store, now=clock(), sources=settings.sources)
        except DigestError as error:
            runs.append(DigestRun(digest.name, None, False, None, note=str(error)))
            continue
        assert issue.id is not None
        if not digest.auto_approve and store.issue_status(issue.id) == "draft":
            runs.append(DigestRun(digest.name, issue, created, None, note="auto_approve is off"))
            continue
        report = await send_issue(settings, store, issue.id, backend, clock=clock)
        runs.append(DigestRun(digest.name, issue, created, report))
    return RunReport(fetch=fetched, digests=tuple(runs))


# --- scheduled runs: `digest serve`'s jobs and cron's `digest run` (decisions: digest/slots.py)


def send_rule(digest: DigestConfig) -> SendRule:
    """The digest's late cut-off and send window, as the slot decisions take them."""
    window = parse_send_window(digest.send_window) if digest.send_window else None
    return SendRule(late_after=timedelta(hours=digest.late_after), zone=digest.zone, window=window)


def digest_slot(digest: DigestConfig, now: datetime) -> datetime | None:
    """The digest's newest schedule slot at or before `now` (UTC)."""
    return latest_slot(schedule_trigger(digest.schedule, digest.zone), now)


async def run_digest_slot(
    settings: Settings,
    store: Store,
    backend: MailBackend,
    digest: DigestConfig,
    *,
    slot: datetime,
    clock: Callable[[], datetime],
) -> DigestRun:
    """The issue of `slot`'s period: built once (whoever runs first), then sent, approved for
    the send window, or left for an editor (who is emailed the review link), saying why.

    The period comes from the slot, not the clock, so a late run builds the punctual issue.
    """
    try:
        issue, created = build_issue(digest, store, now=slot, sources=settings.sources)
    except DigestError as error:  # NothingNew among them: logged, no issue
        return DigestRun(digest.name, None, False, None, note=str(error))
    assert issue.id is not None
    status = store.issue_status(issue.id)
    if status in ("approved", "sent", "cancelled"):
        note = "approved; sent when due" if status == "approved" else f"already {status}"
        return DigestRun(digest.name, issue, created, None, note=note)
    decision = slot_decision(send_rule(digest), slot, clock())
    if status == "draft" and not digest.auto_approve:
        if created:
            await tell_editors(
                settings, digest, issue, backend, reason="auto_approve is off", now=clock()
            )
        return DigestRun(digest.name, issue, created, None, note="waits for approval")
    if decision.action == "hold":
        log.warning("digest=%s issue=%s not sent: %s", digest.name, issue.id, decision.reason)
        if created:
            await tell_editors(
                settings, digest, issue, backend, reason=decision.reason, now=clock()
            )
        return DigestRun(digest.name, issue, created, None, note=decision.reason)
    if decision.action == "wait" and status == "draft":
        assert decision.at is not None
        store.approve_draft_for_later(issue.id, send_after=decision.at, now=clock())
        log.info("digest=%s issue=%s %s", digest.name, issue.id, decision.reason)
        return DigestRun(digest.name, issue, created, None, note=decision.reason)
    # A draft to auto-approve, or a send another run began (resuming sends no one twice).
    report = await send_issue(settings, store, issue.id, backend, clock=clock)
    return DigestRun(digest.name, issue, created, report)


async def send_due(
    settings: Settings,
    store: Store,
    backend: MailBackend,
    *,
    clock: Callable[[], datetime],
    digest_name: str | None = None,
) -> list[DigestRun]:
    """Send the approved issues whose time has come (inside their window, not too late).

    One too late goes back to draft, and its editors are told (once: by the run that moved it).
    """
    digests = {d.name: d for d in settings.digests if digest_name in (None, d.name)}
    rules = {name: send_rule(digest) for name, digest in digests.items()}
    runs: list[DigestRun] = []
    for approved, decision in due_issues(store.approved_issues(), rules, clock()):
        if decision.action == "wait":
            continue
        digest = digests[approved.digest]
        issue = store.load_issue(approved.issue_id)
        assert issue is not None
        if decision.action == "hold":
            if store.hold_approved(approved.issue_id, now=clock()):
                log.warning(
                    "digest=%s issue=%s not sent: %s", digest.name, issue.id, decision.reason
                )
                await tell_editors(
                    settings, digest, issue, backend, reason=decision.reason, now=clock()
                )
            runs.append(DigestRun(digest.name, issue, False, None, note=decision.reason))
            continue
        try:
            report = await send_issue(settings, store, approved.issue_id, backend, clock=clock)
        except DigestError as error:
            log.warning("digest=%s issue=%s not sent: %s", digest.name, issue.id, error)
            runs.append(DigestRun(digest.name, issue, False, None, note=str(error)))
            continue
        runs.append(DigestRun(digest.name, issue, False, report))
    return runs


async def run_scheduled(
    settings: Settings,
    store: Store,
    backend: MailBackend,
    *,
    clock: Callable[[], datetime],
    digest_name: str | None = None,
) -> RunReport:
    """`digest run`, for cron: fetch, each digest's latest slot (see run_digest_slot), then
    the approved issues that are due. Running it again, or from two hosts, sends nobody twice."""
    fetched = await fetch_sources(settings, store, clock=clock)
    chosen = [settings.digest(digest_name)] if digest_name else list(settings.digests)
    runs: list[DigestRun] = []
    for digest in chosen:
        slot = digest_slot(digest, clock())
        if slot is None:
            runs.append(DigestRun(digest.name, None, False, None, note="no slot in 5 years"))
            continue
        runs.append(await run_digest_slot(settings, store, backend, digest, slot=slot, clock=clock))
    runs.extend(await send_due(settings, store, backend, clock=clock, digest_name=digest_name))
    return RunReport(fetch=fetched, digests=tuple(runs))


def describe_run(run: DigestRun) -> str:
    """One line for an operator: what happened to the digest's issue in a scheduled run."""
    if run.issue is None:
        return f"{run.digest}: {run.note}"
    if run.sent is None and run.note.startswith("late:"):
        return f"{run.digest}: issue {run.issue.id}: {run.note} (or `digest send {run.issue.id}`)"
    if run.sent is None:
        return f"{run.digest}: issue {run.issue.id}: {run.note}"
    return (
        f"{run.digest}: issue {run.issue.id}: {run.sent.sent} sent, {run.sent.failed} failed, "
        f"{run.sent.unknown} unknown, {run.sent.queued} queued"
    )
