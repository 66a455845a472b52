"""Plain-text and Markdown articles (digest/ingest/plaintext.py) on hostile text.

Any text gives an Article with a one-line title and safe HTML, or ExtractError naming the
file; a date line is read only when it names a real moment.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import ExtractError
from digest.ingest.plaintext import parse_date_line, parse_markdown, parse_plain_text
from digest.models import Article
from tests.fuzz.hostile import FUZZ, assert_one_line, assert_safe_html

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

URL = "https://news.example.org/notes.txt"
SOURCE = "Hostile Notes"
LINES = st.sampled_from(
    [
        "Oct 15, 2024 - 12:00",
        "29 February 2023",
        "2024-13-45",
        "31.12.9999 23:59 UTC",
        "Feb 30, 2024 at 99:99",
        "Related:",
        "Support us: donate today",
        "# Heading <script>alert(1)</script>",
        "[link](javascript:alert(1))",
        "![img](data:text/html,x)",
        "<img src=x onerror=alert(1)>",
        "    indented code",
        "> quote",
        "* * *",
        "\u2028",
        "\x00",
        "\r",
        "\ufeff",
        "",
    ]
)
text_documents = st.lists(LINES | st.text(max_size=50), max_size=25).map("\n".join)


@cache
def seed_article() -> str:
    """The reference article that documents plaintext.py's cases, when the shared seeds exist."""
    from tests.fuzz.hostile import CORPUS

    seeds = sorted((CORPUS.parent / "seeds").glob("*.txt"))
    return seeds[0].read_text(encoding="utf-8", errors="replace") if seeds else ""


def check_article(article: Article) -> None:
    assert isinstance(article, Article)
    assert "\n" not in article.title and "\r" not in article.title
    assert "\n" not in article.summary
    assert_safe_html(article.html)
    assert article.url == URL
    assert article.published is None or article.published.tzinfo is UTC


@pytest.mark.parametrize("parse", [parse_plain_text, parse_markdown], ids=["text", "markdown"])
@settings(FUZZ, max_examples=100)
@given(text=text_documents | st.text(max_size=400))
def test_any_text_gives_a_safe_article_or_one_clear_error(
    parse: Callable[..., Article], text: str
) -> None:
    """Plain text and Markdown alike: an article fit to show, or one line naming the file."""
    try:
        article = parse(text, url=URL, source=SOURCE)
    except ExtractError as error:
        assert_one_line(str(error), naming=URL)
        return
    check_article(article)


@FUZZ
@given(cut=st.integers(0, 4000), noise=st.lists(LINES, max_size=4))
def test_the_reference_article_cut_and_noised_still_parses(cut: int, noise: list[str]) -> None:
    seed = seed_article()
    text = "\n".join(noise) + "\n" + seed[:cut] if seed else "\n".join(noise)
    try:
        article = parse_plain_text(text, url=URL, source=SOURCE)
    except ExtractError as error:
        assert_one_line(str(error), naming=URL)
        return
    check_article(article)


@FUZZ
@given(line=LINES | st.text(max_size=45))
def test_a_date_line_is_a_utc_moment_or_none(line: str) -> None:
    moment = parse_date_line(line)
    assert moment is None or (isinstance(moment, datetime) and moment.tzinfo is UTC)


@FUZZ
@given(moment=st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)))
def test_written_dates_read_back(moment: datetime) -> None:
    """Round trip: a day and minute written as publishers write them (four-digit years) is read
    as that moment."""
    written = moment.strftime("%b %d, %Y - %H:%M")
    assert parse_date_line(written) == moment.replace(second=0, microsecond=0, tzinfo=UTC)
