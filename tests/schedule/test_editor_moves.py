"""Scheduled runs and an editor at work on the same issue: a run never sends or re-approves a
draft an editor has taken over, however the two interleave (digest.runs, digest.store)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from digest.pipeline import build_issue
from digest.runs import EDITOR_HAS_IT
from digest.slots import ApprovedIssue
from digest.store import Store
from tests.schedule.conftest import READERS, Clock, MakeProject
from tests.schedule.test_run import (
    EDITOR,
    SLOT,
    due,
    each_reader_got,
    setup,
    slot_run,
)


class EditorSavesAfterTheDueRead(Store):
    """The store as an editor's save right after the due check read the approved list sees it."""

    def approved_issues(self) -> list[ApprovedIssue]:
        found = super().approved_issues()
        for approved in found:
            issue = self.load_issue(approved.issue_id)
            assert issue is not None
            self.save_issue_edits(replace(issue, intro="Not ready yet"), now=SLOT)
        return found


class EditorMovesAfterTheAutoApproval(Store):
    """An editor's save (or cancel) lands just after a run auto-approved its draft."""

    def __init__(self, store: Store, move: str) -> None:
        super().__init__(store.engine)
        self.move = move

    def approve_draft_for_later(
        self, issue_id: int, *, send_after: datetime | None, now: datetime
    ) -> bool:
        approved = super().approve_draft_for_later(issue_id, send_after=send_after, now=now)
        if self.move == "cancel":
            self.cancel_issue(issue_id, now=now)
        else:
            issue = self.load_issue(issue_id)
            assert issue is not None
            self.save_issue_edits(replace(issue, intro="Hold on"), now=now)
        return approved


async def test_the_due_check_does_not_send_a_draft_an_editor_just_took_back(
    make_project: MakeProject,
    sqlite_url: str,
    opened: list[Store],
) -> None:
    project, settings, store = setup(make_project, sqlite_url, opened, auto_approve=False)
    clock = Clock(SLOT)
    run = await slot_run(settings, store, clock)
    assert run.issue is not None and run.issue.id is not None
    store.approve_issue(run.issue.id, send_after=None, now=clock())
    racing = EditorSavesAfterTheDueRead(store.engine)
    [taken_back] = await due(settings, racing, clock)
    assert taken_back.sent is None and "an editor has it; not sent" in taken_back.note
    assert store.issue_status(run.issue.id) == "draft"
    assert each_reader_got(project, 0)


@pytest.mark.parametrize("move", ["save", "cancel"])
async def test_a_slot_run_does_not_send_what_an_editor_takes_back_after_its_approval(
    make_project: MakeProject,
    sqlite_url: str,
    opened: list[Store],
    move: str,
) -> None:
    project, settings, store = setup(make_project, sqlite_url, opened)
    racing = EditorMovesAfterTheAutoApproval(store, move)
    run = await slot_run(settings, racing, Clock(SLOT + timedelta(seconds=5)))
    assert run.issue is not None and run.issue.id is not None and run.sent is None
    status = "cancelled" if move == "cancel" else "draft"
    assert store.issue_status(run.issue.id) == status and status in run.note
    assert each_reader_got(project, 0)


async def test_a_later_pass_leaves_a_draft_an_editor_took_back_alone(
    make_project: MakeProject,
    sqlite_url: str,
    opened: list[Store],
) -> None:
    # Outside the window the run approves the issue for 09:00; the editor edits it at 08:30.
    project, settings, store = setup(make_project, sqlite_url, opened, send_window="09:00-17:00")
    clock = Clock(SLOT + timedelta(seconds=1))
    first = await slot_run(settings, store, clock)
    assert first.issue is not None and first.issue.id is not None
    assert store.issue_status(first.issue.id) == "approved"
    clock.advance(minutes=30)
    store.save_issue_edits(replace(first.issue, intro="Needs a look"), now=clock())
    # Cron passes at 09:05 and 10:00 (window open, slot not late): nothing goes out.
    for minutes in (35, 60):
        clock.now = SLOT + timedelta(hours=1, minutes=minutes - 30)
        again = await slot_run(settings, store, clock)
        assert (again.created, again.sent, again.note) == (False, None, EDITOR_HAS_IT)
        assert await due(settings, store, clock) == []
    assert store.issue_status(first.issue.id) == "draft"
    assert each_reader_got(project, 0)
    # The editor approves it: the due check sends it.
    store.approve_issue(first.issue.id, send_after=None, now=clock())
    [sent] = await due(settings, store, clock)
    assert sent.sent is not None and sent.sent.sent == len(READERS)


async def test_an_untouched_draft_a_crashed_run_left_is_sent_by_the_next_pass(
    make_project: MakeProject,
    sqlite_url: str,
    opened: list[Store],
) -> None:
    project, settings, store = setup(make_project, sqlite_url, opened)
    issue, created = build_issue(settings.digest("weekly"), store, now=SLOT)
    assert created  # ... and the process died before it sent
    run = await slot_run(settings, store, Clock(SLOT + timedelta(minutes=10)))
    assert not run.created and run.sent is not None and run.sent.sent == len(READERS)
    assert each_reader_got(project, 1)


async def test_an_issue_approved_to_go_at_once_is_late_counted_from_its_approval(
    make_project: MakeProject,
    sqlite_url: str,
    opened: list[Store],
) -> None:
    project, settings, store = setup(make_project, sqlite_url, opened, auto_approve=False)
    clock = Clock(SLOT)
    run = await slot_run(settings, store, clock)
    assert run.issue is not None and run.issue.id is not None
    clock.advance(hours=2)  # Monday 10:00 Berlin: approved to go at once ...
    store.approve_issue(run.issue.id, send_after=None, now=clock())
    clock.advance(days=3)  # ... and the scheduler is down till Thursday
    [held] = await due(settings, store, clock)
    assert held.sent is None and "late: its approval 2026-11-23 09:00 UTC" in held.note
    assert store.issue_status(run.issue.id) == "draft"
    assert each_reader_got(project, 0)
    assert len(project.mail_to(EDITOR)) == 2  # "waits for approval", then "late"


async def test_a_held_issue_is_logged_once_not_on_every_pass(
    make_project: MakeProject,
    sqlite_url: str,
    opened: list[Store],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _project, settings, store = setup(make_project, sqlite_url, opened)
    clock = Clock(SLOT + timedelta(hours=13))
    with caplog.at_level(logging.WARNING, logger="digest.runs"):
        for _pass in range(3):
            run = await slot_run(settings, store, clock)
            assert run.note.startswith("late: its slot")
            clock.advance(minutes=10)
    assert sum("not sent: late" in record.getMessage() for record in caplog.records) == 1


async def test_a_send_stopped_half_way_resumes_inside_the_window_only(
    make_project: MakeProject,
    sqlite_url: str,
    opened: list[Store],
) -> None:
    project, settings, store = setup(make_project, sqlite_url, opened, send_window="08:00-10:00")
    issue, _created = build_issue(settings.digest("weekly"), store, now=SLOT)
    assert issue.id is not None
    store.set_issue_status(issue.id, "sending", now=SLOT)  # a process died while sending
    evening = Clock(datetime(2026, 11, 23, 17, tzinfo=UTC))  # 18:00 in Berlin
    run = await slot_run(settings, store, evening)
    assert run.sent is None and run.note == (
        "sending stopped outside the send window; resumes at 2026-11-24 07:00 UTC"
    )
    assert each_reader_got(project, 0)
    morning = Clock(datetime(2026, 11, 24, 7, 30, tzinfo=UTC))
    resumed = await slot_run(settings, store, morning)
    assert resumed.sent is not None and resumed.sent.sent == len(READERS)
    assert store.issue_status(issue.id) == "sent"
