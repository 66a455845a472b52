"""A digest's slot run and the due check, on a real database and the file backend, with a
clock the test moves (digest.runs.run_digest_slot, send_due; digest.review)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes

from digest.config import Settings
from digest.deliver.backends import backend_from_url
from digest.review import render_review
from digest.runs import digest_slot, run_digest_slot, send_due
from digest.store import Store
from tests.schedule.conftest import READERS, Clock, MakeProject, Project, stories

SLOT = datetime(2026, 11, 23, 7, tzinfo=UTC)  # Monday 08:00 in Berlin
EDITOR = "ed@example.org"


def setup(make_project: MakeProject, url: str, opened: list[Store], **digest: object):
    project = make_project(url, editors=[EDITOR], **digest)
    settings = project.settings()
    store = Store.open(settings.database_url)
    opened.append(store)
    store.save_articles(stories(SLOT - timedelta(days=1)), now=SLOT - timedelta(hours=20))
    return project, settings, store


async def slot_run(settings: Settings, store: Store, clock: Clock, slot: datetime = SLOT):
    backend = backend_from_url(settings.mail_url)
    digest = settings.digest("weekly")
    return await run_digest_slot(settings, store, backend, digest, slot=slot, clock=clock)


async def due(settings: Settings, store: Store, clock: Clock):
    return await send_due(settings, store, backend_from_url(settings.mail_url), clock=clock)


def each_reader_got(project: Project, count: int) -> bool:
    return all(len(project.mail_to(reader)) == count for reader in READERS)


async def test_a_slot_run_sends_once_and_a_late_rerun_finds_the_same_issue(
    make_project: MakeProject, sqlite_url: str, opened: list[Store]
) -> None:
    project, settings, store = setup(make_project, sqlite_url, opened)
    clock = Clock(SLOT + timedelta(seconds=5))
    first = await slot_run(settings, store, clock)
    assert first.created and first.sent is not None and first.sent.sent == len(READERS)
    assert first.issue is not None and first.issue.period_key == "2026-W48"
    # Three hours later (a restart within the grace): the slot is the same, so is the issue.
    clock.advance(hours=3)
    slot = digest_slot(settings.digest("weekly"), clock())
    assert slot == SLOT
    again = await slot_run(settings, store, clock, slot)
    assert not again.created and again.issue is not None and again.issue.id == first.issue.id
    assert each_reader_got(project, 1)
    assert project.mail_to(EDITOR) == []


async def test_a_slot_older_than_late_after_is_held_and_the_editors_told_once(
    make_project: MakeProject, sqlite_url: str, opened: list[Store]
) -> None:
    project, settings, store = setup(make_project, sqlite_url, opened)
    clock = Clock(SLOT + timedelta(hours=13))
    run = await slot_run(settings, store, clock)
    assert run.sent is None and run.note.startswith("late: its slot 2026-11-23 07:00 UTC")
    assert run.issue is not None and store.issue_status(run.issue.id or 0) == "draft"
    assert each_reader_got(project, 0)
    assert project.mail_to(EDITOR) == ["Waiting for approval: The Weekly #1"]
    body = next(project.outbox.glob("*ed@example.org.eml")).read_bytes()
    message = message_from_bytes(body)
    text = next(
        part.get_payload(decode=True).decode()
        for part in message.walk()
        if part.get_content_type() == "text/plain"
    )
    assert f"https://digest.example.org/editor/issues/{run.issue.id}" in text
    assert "Why it waits: late: its slot 2026-11-23 07:00 UTC" in " ".join(text.split())
    assert "late_after = 12 h" in " ".join(text.split())
    assert message["List-Unsubscribe"] is None  # editors are not subscribers
    await slot_run(settings, store, clock)
    assert len(project.mail_to(EDITOR)) == 1


async def test_without_auto_approve_the_issue_waits_and_editors_get_the_link(
    make_project: MakeProject, sqlite_url: str, opened: list[Store]
) -> None:
    project, settings, store = setup(make_project, sqlite_url, opened, auto_approve=False)
    clock = Clock(SLOT)
    run = await slot_run(settings, store, clock)
    assert run.note == "waits for approval" and run.issue is not None
    assert store.issue_status(run.issue.id or 0) == "draft"
    assert each_reader_got(project, 0) and len(project.mail_to(EDITOR)) == 1
    # The editor approves it to go at once: the next due check sends it.
    store.set_issue_status(run.issue.id or 0, "approved", now=clock())
    clock.advance(minutes=30)
    [sent] = await due(settings, store, clock)
    assert sent.sent is not None and sent.sent.sent == len(READERS)
    assert each_reader_got(project, 1)


async def test_outside_its_send_window_an_issue_waits_for_the_window_to_open(
    make_project: MakeProject, sqlite_url: str, opened: list[Store]
) -> None:
    project, settings, store = setup(make_project, sqlite_url, opened, send_window="09:00-17:00")
    clock = Clock(SLOT + timedelta(seconds=1))
    run = await slot_run(settings, store, clock)
    assert run.note == "outside the send window; goes at 2026-11-23 08:00 UTC"
    assert run.issue is not None and store.issue_status(run.issue.id or 0) == "approved"
    clock.advance(minutes=30)
    assert await due(settings, store, clock) == []
    assert each_reader_got(project, 0)
    clock.now = datetime(2026, 11, 23, 8, 0, 30, tzinfo=UTC)  # 09:00:30 in Berlin
    [sent] = await due(settings, store, clock)
    assert sent.sent is not None and sent.sent.sent == len(READERS)
    assert each_reader_got(project, 1)
    clock.advance(minutes=1)
    assert await due(settings, store, clock) == []


async def test_an_approved_issue_missed_by_more_than_late_after_goes_back_to_its_editors(
    make_project: MakeProject, sqlite_url: str, opened: list[Store]
) -> None:
    project, settings, store = setup(
        make_project, sqlite_url, opened, send_window="09:00-17:00", late_after=2
    )
    clock = Clock(SLOT)
    run = await slot_run(settings, store, clock)
    assert run.issue is not None and store.issue_status(run.issue.id or 0) == "approved"
    clock.now = datetime(2026, 11, 23, 11, 0, 1, tzinfo=UTC)  # the window opened 3 h ago
    [held] = await due(settings, store, clock)
    assert held.sent is None and "its send time 2026-11-23 08:00 UTC was 3.0 h ago" in held.note
    assert store.issue_status(run.issue.id or 0) == "draft"
    assert each_reader_got(project, 0) and len(project.mail_to(EDITOR)) == 1
    assert await due(settings, store, clock) == []
    assert len(project.mail_to(EDITOR)) == 1


async def test_nothing_new_builds_no_issue_and_says_so(
    make_project: MakeProject, sqlite_url: str, opened: list[Store]
) -> None:
    project = make_project(sqlite_url, editors=[EDITOR])
    settings = project.settings()
    store = Store.open(settings.database_url)
    opened.append(store)
    run = await slot_run(settings, store, Clock(SLOT))
    assert run.issue is None and "nothing new" in run.note
    assert store.latest_issue_id() is None and project.mail() == []


def test_the_review_email_names_the_issue_and_links_the_editor_page(
    make_project: MakeProject, sqlite_url: str, opened: list[Store]
) -> None:
    _project, settings, store = setup(make_project, sqlite_url, opened)
    from digest.pipeline import build_issue

    issue, _created = build_issue(settings.digest("weekly"), store, now=SLOT)
    rendered = render_review(settings, settings.digest("weekly"), issue, "auto_approve is off")
    assert rendered.subject == "Waiting for approval: The Weekly #1"
    assert rendered.preheader == "auto_approve is off"
    link = f"https://digest.example.org/editor/issues/{issue.id}"
    assert f'href="{link}"' in rendered.html and link in rendered.text
    assert "3 stories" in rendered.text and "Unsubscribe" not in rendered.text
