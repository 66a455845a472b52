"""The editor's preview is the reader's message; tests, approval, cancelling and stats.

Fixtures come from tests/web/test_editor.py: the app as `digest serve` builds it, logged in,
one draft issue with Science, Sport and an automatic section.
"""

from __future__ import annotations

import asyncio
import email
import html
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from digest.deliver.file import FileBackend
from digest.pipeline import send_issue
from digest.store import ProviderEvent, QueuedRecipient
from subscribers import service
from tests.web.test_editor import START, EditorSite, editor

__all__ = ["editor"]


def add_reader(editor: EditorSite, address: str, topics: tuple[str, ...] = ()) -> int:
    with editor.store.transaction() as conn:
        person = service.add_subscriber(
            conn, address, list_name="weekly", topics=topics, consent="at a fair", now=START
        )
    return person.id


def read_eml(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, kind: str) -> str:
    body = message.get_body(preferencelist=(kind,))
    assert body is not None
    return body.get_content()


def shown_text(page: str) -> str:
    found = re.search(r'<pre class="text" id="text-version">(.*?)</pre>', page, re.S)
    assert found, "no text version on the page"
    return html.unescape(found.group(1))


def sent_copies(editor: EditorSite) -> dict[str, EmailMessage]:
    """Send the issue through the real outbox and file backend; each reader's message."""
    folder = editor.outbox / "sent"
    clock = editor.clock
    asyncio.run(
        send_issue(editor.settings, editor.store, editor.issue_id, FileBackend(folder), clock=clock)
    )
    return {str(read_eml(p)["To"]): read_eml(p) for p in sorted(folder.glob("*.eml"))}


# --- the preview is the message --------------------------------------------------------------


def test_the_preview_as_a_subscriber_is_byte_for_byte_their_message(editor: EditorSite) -> None:
    add_reader(editor, "sci@example.org", ("Science",))
    add_reader(editor, "all@example.org")
    editor.edit(action="intro", intro="A *big* week.")
    editor.edit(action="subject", subject="Science, sport and more")
    previews = {
        reader: (
            editor.page(f"/email?reader={reader}").text,
            shown_text(editor.page(f"?reader={reader}").text),
        )
        for reader in ("sci@example.org", "all@example.org")
    }
    editor.store.approve_issue(editor.issue_id, send_after=None, now=START)
    copies = sent_copies(editor)
    for reader, (preview_html, preview_text) in previews.items():
        message = copies[reader]
        assert part(message, "html") == preview_html
        assert part(message, "plain") == preview_text
        assert message["Subject"] == "Science, sport and more"
    assert previews["sci@example.org"][0] != previews["all@example.org"][0]
    assert "Story P1" not in previews["sci@example.org"][0]


def test_the_inbox_line_shows_sender_subject_and_preheader(editor: EditorSite) -> None:
    page = editor.page().text
    assert re.search(r'id="inbox-from">Example News &lt;news@example.org&gt;<', page)
    assert re.search(r'id="inbox-subject">The Weekly — March 3, 2025<', page)
    assert re.search(r'id="inbox-preheader">Story S1 · Story S2 · Story S3<', page)


def test_the_preview_shows_the_email_at_600_and_375_pixels(editor: EditorSite) -> None:
    page = editor.page().text
    frames = re.findall(r'<iframe id="preview-(\w+)" src="([^"]+)" width="(\d+)"', page)
    assert [(name, width) for name, _src, width in frames] == [("desktop", "600"), ("phone", "375")]
    src = html.unescape(frames[0][1])
    assert src == f"/editor/issues/{editor.issue_id}/email"
    assert "Story S1" in editor.client.get(src).text


def test_a_topic_choice_previews_that_variant(editor: EditorSite) -> None:
    page = editor.page("?topics=Sport").text
    frame = re.search(r'<iframe id="preview-desktop" src="([^"]+)"', page)
    assert frame is not None
    src = html.unescape(frame.group(1))
    assert src.endswith("/email?topics=Sport")
    variant = editor.client.get(src).text
    assert "Story P1" in variant and "Story S1" not in variant
    assert 'value="Sport" checked' in page
    assert "Story S1" not in shown_text(page)


def test_a_topic_choice_with_nothing_in_the_issue_says_so(editor: EditorSite) -> None:
    editor.edit(action="drop", article="p1")
    editor.edit(action="drop", article="p2")
    page = editor.page("?topics=Sport").text
    assert "get nothing from this issue" in page
    assert (
        editor.client.get(f"/editor/issues/{editor.issue_id}/email?topics=Sport").status_code == 404
    )


def test_previewing_as_someone_not_on_the_list_is_refused(editor: EditorSite) -> None:
    page = editor.page("?reader=stranger@example.org").text
    assert "stranger@example.org is not on the list" in page


# --- test sends -----------------------------------------------------------------------------------


def test_a_test_goes_to_the_given_addresses_only_marked_as_a_test(editor: EditorSite) -> None:
    add_reader(editor, "reader@example.org")
    answer = editor.post("test", addresses="Ed@Example.org, colleague@example.org;ed@example.org")
    assert answer.status_code == 303
    assert "Test sent to 2 addresses." in editor.client.get(answer.headers["location"]).text
    copies = sorted(editor.outbox.glob("*.eml"))
    assert len(copies) == 2
    messages = [read_eml(p) for p in copies]
    assert sorted(str(m["To"]) for m in messages) == ["colleague@example.org", "ed@example.org"]
    assert {str(m["Subject"]) for m in messages} == {"[Test] The Weekly — March 3, 2025"}
    assert len({str(m["Message-ID"]) for m in messages}) == 2
    assert "Story S1" in part(messages[0], "html")
    assert editor.store.outbox_counts(editor.issue_id)["queued"] == 0  # not through the outbox
    assert editor.status() == "draft"


def test_a_test_sends_the_topic_variant_being_previewed(editor: EditorSite) -> None:
    assert editor.post("test", addresses="ed@example.org", topics=["Sport"]).status_code == 303
    (copy,) = editor.outbox.glob("*.eml")
    body = part(read_eml(copy), "html")
    assert "Story P1" in body and "Story S1" not in body


@pytest.mark.parametrize(
    ("addresses", "problem"),
    [
        ("", "at least one address"),
        ("not-an-address", "test address"),
        ("a@x.org b@x.org c@x.org d@x.org e@x.org f@x.org", "at most 5"),
    ],
)
def test_a_test_to_no_bad_or_too_many_addresses_sends_nothing(
    editor: EditorSite, addresses: str, problem: str
) -> None:
    answer = editor.post("test", addresses=addresses)
    assert answer.status_code == 400
    assert problem in answer.text
    assert not editor.outbox.exists() or not list(editor.outbox.glob("*.eml"))


# --- approve, cancel ----------------------------------------------------------------------------


def test_approving_now_leaves_no_send_time(editor: EditorSite) -> None:
    answer = editor.post("approve", when="now", send_at="2030-01-01T09:00")
    assert answer.status_code == 303
    summary = editor.store.issue_summary(editor.issue_id)
    assert summary is not None
    assert (summary.status, summary.send_after) == ("approved", None)
    assert "sends at once" in editor.page().text


def test_approving_for_a_time_stores_it_in_utc_from_the_digest_zone(editor: EditorSite) -> None:
    # 4 March 2025, 09:30 in Berlin (CET, UTC+1).
    assert editor.post("approve", when="later", send_at="2025-03-04T09:30").status_code == 303
    summary = editor.store.issue_summary(editor.issue_id)
    assert summary is not None
    assert summary.send_after == datetime(2025, 3, 4, 8, 30, tzinfo=UTC)
    assert "sends 2025-03-04 09:30 CET" in editor.page().text
    # In summer time Berlin is UTC+2.
    editor.post("approve", when="later", send_at="2025-07-04T09:30")
    summary = editor.store.issue_summary(editor.issue_id)
    assert summary is not None and summary.send_after == datetime(2025, 7, 4, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("send_at", "problem"),
    [("2025-03-01T09:00", "has passed"), ("tomorrow", "expected"), ("", "choose the time")],
)
def test_a_send_time_in_the_past_or_unreadable_is_refused(
    editor: EditorSite, send_at: str, problem: str
) -> None:
    answer = editor.post("approve", when="later", send_at=send_at)
    assert answer.status_code == 400
    assert problem in answer.text
    assert editor.status() == "draft"


def test_an_edit_returns_an_approved_issue_to_draft(editor: EditorSite) -> None:
    editor.post("approve", when="later", send_at="2025-03-04T09:30")
    assert "Saving a change makes it a draft again" in editor.page().text
    editor.edit(action="drop", article="s1")
    summary = editor.store.issue_summary(editor.issue_id)
    assert summary is not None
    assert (summary.status, summary.send_after) == ("draft", None)


def test_a_draft_can_be_cancelled_and_then_neither_edited_nor_approved(editor: EditorSite) -> None:
    assert editor.post("cancel").status_code == 303
    assert editor.status() == "cancelled"
    page = editor.page().text
    assert 'id="edit"' not in page and 'action="/editor/issues/1/approve"' not in page
    assert editor.post("edit", action="drop", article="s1").status_code == 409
    assert editor.post("approve", when="now").status_code == 409
    assert editor.layout()[0] == ("Science", ("s1", "s2", "s3"))


@pytest.mark.parametrize("status", ["sending", "sent"])
def test_an_issue_that_went_out_cannot_be_cancelled_edited_or_approved(
    editor: EditorSite, status: str
) -> None:
    editor.store.set_issue_status(editor.issue_id, status, now=START)
    assert editor.post("cancel").status_code == 409
    assert editor.post("edit", action="subject", subject="Late change").status_code == 409
    assert editor.post("approve", when="now").status_code == 409
    assert editor.status() == status
    assert editor.issue().subject == ""


def test_an_issue_with_every_item_dropped_cannot_be_approved(editor: EditorSite) -> None:
    for article_id in ("s1", "s2", "s3", "p1", "p2", "q1"):
        editor.edit(action="drop", article=article_id)
    answer = editor.post("approve", when="now")
    assert answer.status_code == 400
    assert "nothing to send" in answer.text


# --- stats -------------------------------------------------------------------------------------


def stat(page: str, label: str) -> int:
    found = re.search(rf'id="stat-{label}">(\d+)<', page)
    assert found, f"no {label} stat"
    return int(found.group(1))


def test_the_stats_panel_counts_the_outbox_and_the_provider_events(editor: EditorSite) -> None:
    recipients = [QueuedRecipient(n, f"r{n}@example.org", ()) for n in range(1, 6)]
    editor.store.queue_recipients(editor.issue_id, recipients, now=START)
    with editor.store.transaction() as conn:
        conn.exec_driver_sql(
            "UPDATE outbox SET state = CASE WHEN subscriber_id <= 3 THEN 'sent' ELSE 'failed' END"
        )
    events = [
        ("delivered", 1), ("delivered", 2), ("open", 1), ("open", 1), ("click", 2),
        ("bounce", 3), ("spamreport", 2), ("unsubscribe", 1), ("group_unsubscribe", 2),
    ]  # fmt: skip
    editor.store.record_provider_events(
        [
            ProviderEvent(f"ev{n}", name, editor.issue_id, who, f"r{who}@example.org", START, "{}")
            for n, (name, who) in enumerate(events)
        ]
    )
    page = editor.page().text
    expected = {
        "sent": 3, "failed": 2, "unknown": 0, "queued": 0, "delivered": 2, "opens": 2,
        "clicks": 1, "bounces": 1, "complaints": 1, "unsubscribes": 2,
    }  # fmt: skip
    assert {label: stat(page, label) for label in expected} == expected
    listed = editor.client.get("/editor/").text
    row = re.search(rf'<tr id="issue-{editor.issue_id}">(.*?)</tr>', listed, re.S)
    assert row is not None
    assert re.findall(r'<td class="number">(\d+)</td>', row.group(1)) == ["6", "3", "2", "0", "0"]


def test_times_on_the_list_are_in_the_digest_zone(editor: EditorSite) -> None:
    editor.store.approve_issue(editor.issue_id, send_after=START + timedelta(days=1), now=START)
    listed = editor.client.get("/editor/").text
    assert "2025-03-03 09:00 CET" in listed  # built 08:00 UTC
    assert "sends 2025-03-04 09:00 CET" in listed
