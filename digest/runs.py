"""Runs: one pass for cron (`digest run`) and the scheduler's jobs: fetch sources, build each
digest's issue for its slot, and send it or what else is due (the decisions: digest/slots.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.collect import FetchReport, fetch_sources
from digest.config import DigestConfig, Settings
from digest.deliver.backends import MailBackend
from digest.deliver.outbox import SendReport
from digest.errors import DigestError
from digest.models import Issue
from digest.pipeline import build_issue, send_issue
from digest.review import tell_editors
from digest.slots import (
    SendRule,
    due_issues,
    in_window,
    latest_slot,
    next_window_open,
    parse_send_window,
    schedule_trigger,
    slot_decision,
)
from digest.store import Store

log = logging.getLogger(__name__)


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
    Every later pass over the same slot (cron, a restart) finds it built: a draft an editor
    has taken over is theirs, and only a draft no one has touched is still approved by a run.
    """
    try:
        issue, created = build_issue(digest, store, now=slot, sources=settings.sources)
    except DigestError as error:  # NothingNew among them: logged, no issue
        return DigestRun(digest.name, None, False, None, note=str(error))
    assert issue.id is not None
    status = store.issue_status(issue.id)
    rule = send_rule(digest)
    if status in ("approved", "sent", "cancelled"):
        note = "approved; sent when due" if status == "approved" else f"already {status}"
        return DigestRun(digest.name, issue, created, None, note=note)
    if status == "sending":
        return await _resume_sending(settings, store, backend, digest, issue, rule, clock=clock)
    if not digest.auto_approve:
        if created:
            await tell_editors(
                settings, digest, issue, backend, reason="auto_approve is off", now=clock()
            )
        return DigestRun(digest.name, issue, created, None, note="waits for approval")
    decision = slot_decision(rule, slot, clock())
    if decision.action == "hold":
        if created:  # later passes find it held already: said once
            log.warning("digest=%s issue=%s not sent: %s", digest.name, issue.id, decision.reason)
            await tell_editors(
                settings, digest, issue, backend, reason=decision.reason, now=clock()
            )
        return DigestRun(digest.name, issue, created, None, note=decision.reason)
    # Approve the draft only while no editor has taken it over (atomic with that check), then
    # send approved only: an editor's save in between takes it back to draft, unsent.
    if not store.approve_draft_for_later(issue.id, send_after=decision.at, now=clock()):
        return DigestRun(digest.name, issue, created, None, note=_moved_elsewhere(store, issue))
    if decision.action == "wait":
        log.info("digest=%s issue=%s %s", digest.name, issue.id, decision.reason)
        return DigestRun(digest.name, issue, created, None, note=decision.reason)
    return await _send(settings, store, backend, digest, issue, created, clock=clock)


EDITOR_HAS_IT = "an editor has taken this draft over; it goes when they approve it"


def _moved_elsewhere(store: Store, issue: Issue) -> str:
    """Why a run did not approve its draft: an editor has it, or another run or an editor moved
    it first (an approved issue then goes through the due check, at its own send time)."""
    assert issue.id is not None
    status = store.issue_status(issue.id)
    if status == "draft":
        return EDITOR_HAS_IT
    return "approved; sent when due" if status == "approved" else f"already {status}"


async def _resume_sending(
    settings: Settings,
    store: Store,
    backend: MailBackend,
    digest: DigestConfig,
    issue: Issue,
    rule: SendRule,
    *,
    clock: Callable[[], datetime],
) -> DigestRun:
    """A send of this slot's issue that stopped half-way goes on, inside the send window only
    (resuming sends no one twice)."""
    if not in_window(rule, clock()):
        opens = next_window_open(rule, clock())
        note = f"sending stopped outside the send window; resumes at {opens:%Y-%m-%d %H:%M} UTC"
        return DigestRun(digest.name, issue, False, None, note=note)
    return await _send(settings, store, backend, digest, issue, False, clock=clock)


async def _send(
    settings: Settings,
    store: Store,
    backend: MailBackend,
    digest: DigestConfig,
    issue: Issue,
    created: bool,
    *,
    clock: Callable[[], datetime],
) -> DigestRun:
    """Send an approved (or resume a sending) issue; an editor's move in between is reported."""
    assert issue.id is not None
    try:
        report = await send_approved(settings, store, issue.id, backend, clock=clock)
    except DigestError as error:  # cancelled or taken back between the status read and now
        log.warning("digest=%s issue=%s not sent: %s", digest.name, issue.id, error)
        return DigestRun(digest.name, issue, created, None, note=str(error))
    return DigestRun(digest.name, issue, created, report)


async def send_approved(
    settings: Settings,
    store: Store,
    issue_id: int,
    backend: MailBackend,
    *,
    clock: Callable[[], datetime],
) -> SendReport:
    """Send an approved issue (or resume its send): from this process, or, with
    `[mail] workers = true`, through the delivery workers on $DIGEST_BROKER_URL.

    DigestError if it is no longer approved (an editor took it back) or the broker is unset
    or down; the issue then stays as it was, for the next run.
    """
    if not settings.file.mail.workers:
        return await send_issue(
            settings, store, issue_id, backend, clock=clock, from_statuses=("approved",)
        )
    from digest.deliver.workers import broker_from_env, send_with_workers

    broker = broker_from_env(os.environ)
    # The sender waits for the workers' results; a thread keeps the event loop free meanwhile.
    return await asyncio.to_thread(
        send_with_workers,
        settings,
        store,
        issue_id,
        broker,
        clock=clock,
        from_statuses=("approved",),
    )


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
            report = await send_approved(settings, store, approved.issue_id, backend, clock=clock)
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
    slot_of: Callable[[DigestConfig, datetime], datetime | None] = digest_slot,
) -> RunReport:
    """`digest run`, for cron: fetch, each digest's latest slot (see run_digest_slot), then
    the approved issues that are due. Running it again, or from two hosts, sends nobody twice.

    `slot_of` finds a digest's slot at a time; `digest demo` makes it "now", so its issue goes
    at once whatever the day.
    """
    fetched = await fetch_sources(settings, store, clock=clock)
    chosen = [settings.digest(digest_name)] if digest_name else list(settings.digests)
    runs: list[DigestRun] = []
    for digest in chosen:
        slot = slot_of(digest, clock())
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
