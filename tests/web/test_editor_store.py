"""The store's side of editing, on SQLite and PostgreSQL: edits, approval, cancelling, summaries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from digest.editing import drop_item, move_to_section, pin_item, set_intro, set_subject
from digest.store import IssueChanged, IssueNotEditable, QueuedRecipient, Store
from tests.web.test_editor import START, save_issue


def test_an_edited_issue_reads_back_as_saved(store: Store) -> None:
    issue_id = save_issue(store)
    issue = store.load_issue(issue_id)
    assert issue is not None
    edited = set_intro(set_subject(issue, "Big week"), "Hello *you*")
    edited = move_to_section(pin_item(drop_item(edited, "s2"), "p2"), "s1", "Picks")
    store.save_issue_edits(edited, now=START + timedelta(minutes=5))
    again = store.load_issue(issue_id)
    assert again == edited
    assert again is not None and again.pinned == ("p2",) and again.subject == "Big week"


def test_approval_keeps_its_time_until_an_edit_makes_a_draft_again(store: Store) -> None:
    issue_id = save_issue(store)
    at = START + timedelta(days=1)
    store.approve_issue(issue_id, send_after=at, now=START)
    summary = store.issue_summary(issue_id)
    assert summary is not None and (summary.status, summary.send_after) == ("approved", at)
    issue = store.load_issue(issue_id)
    assert issue is not None
    store.save_issue_edits(drop_item(issue, "s1"), now=START)
    summary = store.issue_summary(issue_id)
    assert summary is not None and (summary.status, summary.send_after) == ("draft", None)


@pytest.mark.parametrize("status", ["sending", "sent", "cancelled"])
def test_nothing_changes_an_issue_that_is_not_draft_or_approved(store: Store, status: str) -> None:
    issue_id = save_issue(store)
    store.set_issue_status(issue_id, status, now=START)
    issue = store.load_issue(issue_id)
    assert issue is not None
    with pytest.raises(IssueNotEditable, match=f"issue {issue_id} is {status}"):
        store.save_issue_edits(drop_item(issue, "s1"), now=START)
    with pytest.raises(IssueNotEditable):
        store.approve_issue(issue_id, send_after=None, now=START)
    with pytest.raises(IssueNotEditable):
        store.cancel_issue(issue_id, now=START)
    assert store.issue_status(issue_id) == status
    assert store.load_issue(issue_id) == issue


def test_an_unknown_issue_is_named_in_the_error(store: Store) -> None:
    with pytest.raises(IssueNotEditable, match="issue 99: no such issue"):
        store.cancel_issue(99, now=START)


def test_summaries_count_items_and_outbox_rows_per_issue(store: Store) -> None:
    first = save_issue(store)
    second = save_issue(store, key="2025-W11")
    store.queue_recipients(
        first, [QueuedRecipient(n, f"r{n}@example.org", ()) for n in (1, 2)], now=START
    )
    issue = store.load_issue(second)
    assert issue is not None
    store.save_issue_edits(drop_item(issue, "q1"), now=START)
    summaries = {s.id: s for s in store.issue_summaries()}
    assert summaries[first].item_count == 6 and summaries[second].item_count == 5
    assert summaries[first].outbox["queued"] == 2 and summaries[second].outbox["queued"] == 0
    assert [s.id for s in store.issue_summaries(limit=1)] == [second]


def test_a_change_from_an_out_of_date_view_is_refused_and_changes_nothing(store: Store) -> None:
    issue_id = save_issue(store)
    before = store.issue_summary(issue_id)
    issue = store.load_issue(issue_id)
    assert before is not None and issue is not None
    store.save_issue_edits(drop_item(issue, "s1"), now=START, seen=before.updated)
    after = store.issue_summary(issue_id)
    assert after is not None and after.updated > before.updated  # even within one clock tick
    with pytest.raises(IssueChanged, match=f"issue {issue_id} changed"):
        store.save_issue_edits(drop_item(issue, "s2"), now=START, seen=before.updated)
    with pytest.raises(IssueChanged):
        store.approve_issue(issue_id, send_after=None, now=START, seen=before.updated)
    with pytest.raises(IssueChanged):
        store.cancel_issue(issue_id, now=START, seen=before.updated)
    assert store.issue_summary(issue_id) == after
    store.approve_issue(issue_id, send_after=None, now=START, seen=after.updated)
    assert store.issue_status(issue_id) == "approved"


def test_editor_sessions_end_one_at_a_time_or_all_and_expire(store: Store) -> None:
    later = START + timedelta(hours=12)
    store.create_editor_session("a" * 64, now=START, expires=later)
    store.create_editor_session("b" * 64, now=START, expires=later)
    assert store.is_editor_session("a" * 64, now=START)
    assert not store.is_editor_session("a" * 64, now=later)
    assert store.end_editor_sessions("a" * 64) == 1
    assert not store.is_editor_session("a" * 64, now=START)
    assert store.is_editor_session("b" * 64, now=START)
    assert store.end_editor_sessions() == 1
    assert not store.is_editor_session("b" * 64, now=START)
