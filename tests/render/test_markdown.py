"""The editor's intro: Markdown in, sanitised email HTML and readable plain text out."""

from __future__ import annotations

import pytest

from digest.render.markdown import markdown_html, markdown_text

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

INTRO = """# A busy week

Welcome to **issue 12**: the council [voted](https://example.org/vote) on the budget.

- Flood barrier: *approved*
- Fibre: delayed, see [the plan](https://example.org/plan)

> Quoted from the mayor.
"""


def test_markdown_becomes_the_small_set_of_tags_an_email_needs():
    html = markdown_html(INTRO, styles={"p": "margin:0 0 12px;", "a": "color:#0b57d0;"})
    assert "<h3>A busy week</h3>" in html  # headings are subheadings inside the email
    assert '<p style="margin:0 0 12px;">Welcome to <strong>issue 12</strong>' in html
    assert '<a href="https://example.org/vote" style="color:#0b57d0;" rel="noopener">voted</a>' in (
        html
    )
    assert "<li>Flood barrier: <em>approved</em></li>" in html
    assert "<blockquote>" in html


def test_markdown_html_in_the_intro_is_shown_as_text_and_bad_links_are_dropped():
    hostile = (
        "<script>alert(1)</script> <img src=x onerror=alert(2)> "
        "[click](javascript:alert(3)) [data](data:text/html,hi) ![pic](https://e.org/p.png) "
        "{{ 7*7 }} {% include 'x' %}"
    )
    html = markdown_html(hostile)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript' not in html and 'href="data' not in html
    # Template syntax is text: the intro is data, never a template.
    assert "{{ 7*7 }} {% include 'x' %}" in html


def test_markdown_text_keeps_structure_and_writes_links_out():
    text = markdown_text(INTRO)
    assert text.splitlines() == [
        "A busy week",
        "",
        "Welcome to issue 12: the council voted <https://example.org/vote> on the",
        "budget.",
        "",
        "- Flood barrier: approved",
        "- Fibre: delayed, see the plan <https://example.org/plan>",
        "",
        "> Quoted from the mayor.",
    ]


def test_markdown_text_wraps_list_items_under_their_marker_and_keeps_numbers():
    text = markdown_text("1. " + "long words " * 12 + "\n2. short\n")
    lines = text.splitlines()
    assert lines[0].startswith("1. long words") and len(lines[0]) <= 78
    assert lines[1].startswith("   ") and lines[1][3] != " "  # under the item's text
    assert lines[-1] == "2. short"


def test_deeply_nested_markdown_is_bounded():
    html = markdown_html("> " * 5000 + "deep")
    assert html.count("<blockquote>") <= 25
