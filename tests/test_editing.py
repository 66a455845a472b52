"""The editor's edits as pure functions on an Issue."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.editing import (
    MAX_SUBJECT,
    EditError,
    drop_item,
    move_item,
    move_to_section,
    pin_item,
    rename_section,
    set_intro,
    set_subject,
)
from digest.models import Article, Issue, Section

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it


def issue(*layout: tuple[str, str], pinned: tuple[str, ...] = ()) -> Issue:
    """An issue from ("Section", "a b c") pairs."""
    sections = tuple(
        Section(
            label, tuple(Article(id=i, url="", title=i, text="", source="s") for i in ids.split())
        )
        for label, ids in layout
    )
    return Issue("d", "k", "T", datetime(2025, 1, 1, tzinfo=UTC), sections, id=1, pinned=pinned)


def layout(edited: Issue) -> list[tuple[str, str]]:
    return [(s.label, " ".join(a.id for a in s.articles)) for s in edited.sections]


def test_dropping_a_pinned_item_unpins_it() -> None:
    edited = drop_item(issue(("A", "a b"), pinned=("a",)), "a")
    assert layout(edited) == [("A", "b")]
    assert edited.pinned == ()


def test_pins_lead_their_section_in_the_order_they_were_pinned() -> None:
    edited = pin_item(pin_item(issue(("A", "a b c d")), "c"), "d")
    assert layout(edited) == [("A", "c d a b")]
    assert edited.pinned == ("c", "d")
    # Unpinned, it stays where it stood: first of the unpinned.
    assert layout(pin_item(edited, "c", pinned=False)) == [("A", "d c a b")]


def test_moving_stops_at_the_ends_and_stays_among_its_kind() -> None:
    start = issue(("A", "p a b"), pinned=("p",))
    assert layout(move_item(start, "a", -1)) == [("A", "p a b")]
    assert layout(move_item(start, "b", 5)) == [("A", "p a b")]
    assert layout(move_item(start, "b", -1)) == [("A", "p b a")]
    assert layout(move_item(start, "p", 1)) == [("A", "p a b")]


def test_a_pinned_item_moved_to_another_section_leads_it() -> None:
    edited = move_to_section(issue(("A", "a p"), ("B", "b"), pinned=("p",)), "p", "B")
    assert layout(edited) == [("A", "a"), ("B", "p b")]


def test_moving_the_last_item_out_removes_the_section_and_a_new_label_adds_one() -> None:
    edited = move_to_section(issue(("A", "a"), ("B", "b")), "a", " New   one ")
    assert layout(edited) == [("B", "b"), ("New one", "a")]
    assert move_to_section(edited, "b", "B") == edited


def test_renaming_refuses_topics_existing_labels_and_unknown_sections() -> None:
    start = issue(("Science", "a"), ("cluster 3", "b"))
    with pytest.raises(EditError, match="a topic readers chose"):
        rename_section(start, "Science", "Sciences", topics=("science",))
    with pytest.raises(EditError, match="already has a section"):
        rename_section(start, "cluster 3", "Science")
    with pytest.raises(EditError, match="no section"):
        rename_section(start, "nope", "x")
    with pytest.raises(EditError, match="needs a name"):
        rename_section(start, "cluster 3", "   ")
    assert layout(rename_section(start, "cluster 3", "Space")) == [("Science", "a"), ("Space", "b")]


def test_an_unknown_item_is_an_error() -> None:
    for edit in (drop_item, pin_item):
        with pytest.raises(EditError, match="no item 'x'"):
            edit(issue(("A", "a")), "x")


def test_subject_is_one_line_and_bounded_and_intro_keeps_its_lines() -> None:
    start = issue(("A", "a"))
    assert set_subject(start, " Big\n news ").subject == "Big news"
    with pytest.raises(EditError, match=f"at most {MAX_SUBJECT}"):
        set_subject(start, "x" * (MAX_SUBJECT + 1))
    assert set_intro(start, "Hi\r\n\r\n- a\r\n").intro == "Hi\n\n- a"
