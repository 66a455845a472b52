"""Tests for digest/ingest/normalize.py: URLs, text and HTML in their normal forms."""

from __future__ import annotations

import pytest

from digest.ingest.normalize import (
    canonical_url,
    clean_text,
    html_to_text,
    sanitize_html,
    shorten,
)

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it


def test_canonical_url_drops_tracking_params_fragment_and_default_port() -> None:
    url = (
        "HTTPS://Example.COM:443/News/Story?utm_source=rss&utm_medium=feed&b=2&fbclid=x"
        "&a=1&gclid=y&mc_cid=1&mc_eid=2#comments"
    )
    assert canonical_url(url) == "https://example.com/News/Story?a=1&b=2"


def test_canonical_url_keeps_meaningful_query_and_other_ports() -> None:
    assert canonical_url("http://ex.com:8080/p?id=7&page=") == "http://ex.com:8080/p?id=7&page="
    assert canonical_url("http://ex.com") == "http://ex.com/"


def test_two_spellings_of_one_page_share_a_canonical_url() -> None:
    a = canonical_url("https://news.example/a?utm_campaign=x&id=1")
    b = canonical_url("https://NEWS.example:443/a?id=1#top")
    assert a == b


@pytest.mark.parametrize("value", ["tag:example.com,2024:1", "/srv/articles/a.txt", "", "urn:x"])
def test_canonical_url_leaves_non_web_identifiers_alone(value: str) -> None:
    assert canonical_url(value) == value


def test_clean_text_normalises_unicode_and_whitespace() -> None:
    decomposed = "Cafe\u0301"
    text = f"  {decomposed}\u00a0\u00a0au   lait \t\r\n\n\n\n  second   para  \nline two "
    assert clean_text(text) == "Café au lait\n\nsecond para\nline two"


def test_clean_text_drops_soft_hyphens_inside_words() -> None:
    assert clean_text("Schon im Mit\u00adtel\u00adal\u00adter war") == "Schon im Mittelalter war"
    assert html_to_text("<p>Wein&shy;wirt&shy;schaft</p>") == "Weinwirtschaft"


def test_sanitize_html_removes_code_and_keeps_links() -> None:
    dirty = (
        '<p onclick="steal()">Read <a href="/story?id=1" onmouseover="x()">the story</a>'
        '<script>alert("x")</script><style>p{color:red}</style>'
        '<img src="pic.png" onerror="alert(1)" alt="A pic">'
        '<a href="javascript:alert(1)">bad</a><a href=" JaVaScRiPt:alert(2)">worse</a>'
        "<iframe src='https://evil.example/'>framed</iframe></p>"
    )
    clean = sanitize_html(dirty, base_url="https://news.example/section/page.html")
    lowered = clean.lower()
    for forbidden in ("<script", "alert(", "onclick", "onerror", "onmouseover", "javascript:"):
        assert forbidden not in lowered
    assert "<style" not in lowered and "color:red" not in lowered
    assert "<iframe" not in lowered and "framed" not in lowered
    assert '<a href="https://news.example/story?id=1" rel="noopener noreferrer">the story</a>' in (
        clean
    )
    assert '<img src="https://news.example/section/pic.png" alt="A pic">' in clean


def test_sanitize_html_keeps_only_email_safe_tags() -> None:
    clean = sanitize_html(
        '<div class="x"><h1>Head</h1><h2 id="a">Sub</h2><section><span>text</span></section>'
        "<ul><li><em>one</em></li></ul><blockquote>q</blockquote><br></div>"
    )
    expected = "Head<h2>Sub</h2>text<ul><li><em>one</em></li></ul><blockquote>q</blockquote><br>"
    assert clean == expected


def test_sanitize_html_keeps_tables_so_cells_stay_apart() -> None:
    clean = sanitize_html(
        '<table class="stats" style="width:900px" onclick="x()"><caption>Standings</caption>'
        '<tr><th>Pos.</th><th>Driver</th></tr><tr><td bgcolor="red">1</td><td>Kyle Busch</td></tr>'
        "</table>"
    )
    assert clean == (
        "<table><caption>Standings</caption><tbody><tr><th>Pos.</th><th>Driver</th></tr>"
        "<tr><td>1</td><td>Kyle Busch</td></tr></tbody></table>"
    )
    assert html_to_text(clean) == "Standings\nPos. Driver\n1 Kyle Busch"


def test_html_to_text_reads_blocks_as_paragraphs_and_lists_as_lines() -> None:
    html = (
        "<h2>Title</h2><p>First\n   paragraph with <b>bold</b> &amp; more.</p>"
        "<ul><li>one</li><li>two</li></ul><p>Line<br>break</p><script>var x = 1;</script>"
    )
    assert html_to_text(html) == (
        "Title\n\nFirst paragraph with bold & more.\n\n- one\n- two\n\nLine\nbreak"
    )


def test_html_to_text_of_plain_or_empty_input() -> None:
    assert html_to_text("") == ""
    assert html_to_text("just words &lt;here&gt;") == "just words <here>"


def test_shorten_cuts_at_a_word_boundary() -> None:
    assert shorten("short text", 50) == "short text"
    cut = shorten("one two three four five six", 15)
    assert cut == "one two three…"
    assert len(cut) <= 15
