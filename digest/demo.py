"""`digest demo`: the whole pipeline on bundled sample sources, into a folder of files."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console

from digest.config import DigestConfig, load_settings
from digest.deliver.backends import backend_from_url
from digest.errors import DigestError
from digest.pipeline import preview_issue, send_issue
from digest.runs import run_scheduled
from digest.scaffold import write_demo
from digest.store import Store
from subscribers.csvimport import import_csv
from subscribers.service import audience_for, ensure_list


@dataclass(frozen=True, slots=True)
class DemoResult:
    folder: Path
    sources: int
    failed_sources: int
    articles: int
    duplicates: int
    topics: tuple[str, ...]
    sent: int
    skipped: int
    issue_id: int
    preview: Path
    outbox: Path

    def to_json(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "sources": self.sources,
            "failed_sources": self.failed_sources,
            "articles": self.articles,
            "duplicates": self.duplicates,
            "topics": list(self.topics),
            "sent": self.sent,
            "skipped": self.skipped,
            "issue_id": self.issue_id,
            "preview": str(self.preview),
            "outbox": str(self.outbox),
        }


def _demo_secret(folder: Path) -> str:
    """Reuse the demo's key so links in earlier demo emails keep working."""
    key_file = folder / ".secret_key"
    if key_file.is_file():
        existing = key_file.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    return secrets.token_urlsafe(32)


def _slot_now(_digest: DigestConfig, now: datetime) -> datetime:
    return now


def run_demo(
    folder: Path, *, clock: Callable[[], datetime], progress: Console | None = None
) -> DemoResult:
    """Write the demo folder, import its subscribers, run once, write a preview."""
    folder = folder.resolve()
    files = write_demo(folder, now=clock(), secret=_demo_secret(folder))
    # The demo is self-contained: DIGEST_* variables from the shell do not redirect it.
    settings = load_settings(files.config, {})
    store = Store.open(settings.database_url)
    digest = settings.digest(None)
    topics = [t.name for t in digest.topics]
    with store.transaction() as connection:
        ensure_list(connection, digest.list_name, title=digest.title, now=clock())
        imported = import_csv(
            connection,
            files.subscribers_csv.read_text(encoding="utf-8"),
            list_name=digest.list_name,
            consent="demo sample subscribers",
            topics_known=topics,
            now=clock(),
        )
    if imported.rejected:
        line, reason = imported.rejected[0]
        raise DigestError(f"{files.subscribers_csv}:{line}: {reason}")
    if progress is not None:
        progress.print(f"Demo folder: [bold]{folder}[/bold]")
    # `digest run`'s own pass, with the slot at this moment: the demo sends whatever the day.
    backend = backend_from_url(settings.mail_url)
    report = asyncio.run(run_scheduled(settings, store, backend, clock=clock, slot_of=_slot_now))
    run = report.digests[0]
    sent = run.sent
    if run.issue is not None and sent is None and run.note == "already sent":
        # The demo run again in its folder: this period's issue went out before. Its report
        # (send_issue mails no one twice) stands in for this run's.
        assert run.issue.id is not None
        sent = asyncio.run(send_issue(settings, store, run.issue.id, backend, clock=clock))
    if run.issue is None or sent is None:
        raise DigestError(f"demo: the issue was not sent: {run.note}")
    preview = preview_issue(settings, run.issue, folder / "preview", now=clock())
    with store.transaction() as connection:
        on_list = len(audience_for(connection, digest.list_name, cadence=digest.cadence))
    owed = sent.sent + sent.failed + sent.unknown + sent.queued
    return DemoResult(
        folder=folder,
        sources=len(report.fetch.sources),
        failed_sources=len(report.fetch.failed),
        articles=report.fetch.found,
        duplicates=report.fetch.duplicates,
        topics=tuple(section.label for section in run.issue.sections),
        sent=sent.sent,
        skipped=on_list - owed,
        issue_id=run.issue.id or 0,
        preview=preview.html,
        outbox=Path(settings.mail_url.removeprefix("file://")),
    )
