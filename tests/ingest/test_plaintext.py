"""Tests for digest/ingest/plaintext.py: articles saved as .txt or .md files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.errors import ExtractError
from digest.ingest.plaintext import parse_date_line, parse_markdown, parse_plain_text
from digest.models import article_id

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

SEED = "000_545cff0c2edb726a.txt"


@pytest.fixture(scope="module")
def seed_text(seeds: Path) -> str:
    return (seeds / SEED).read_text(encoding="utf-8")


def test_seed_article_title_summary_and_date(seed_text: str) -> None:
    article = parse_plain_text(seed_text, url="/srv/seeds/a.txt", source="seeds")
    assert article.title == "Rutte: NATO will do what’s necessary to ensure Ukraine’s victory"
    assert article.summary == (
        "The NATO chief said that the Alliance won't be intimidated by Russia's threats."
    )
    assert article.published == datetime(2024, 10, 15, 12, 0, tzinfo=UTC)
    assert article.source == "seeds"
    assert article.id == article_id("/srv/seeds/a.txt")


def test_seed_article_body_keeps_the_story_and_drops_the_clutter(seed_text: str) -> None:
    article = parse_plain_text(seed_text, url="/srv/seeds/a.txt", source="seeds")
    assert article.text.startswith("NATO Secretary General Mark Rutte has reaffirmed")
    assert "Wiesbaden" in article.text
    assert article.text.endswith("stationed in locations such as Kaliningrad.")
    lowered = article.text.lower()
    assert "officials expect nato's new chief" not in lowered
    assert "related:" not in lowered
    assert "become a patron" not in lowered
    assert "cup of coffee" not in lowered
    assert article.title not in article.text  # the repeated title line is gone
    assert article.text.count("\n\n") == 5  # six body paragraphs
    assert article.html.count("<p>") == 6 and "Wiesbaden" in article.html


def test_title_and_body_only() -> None:
    article = parse_plain_text(
        "A plain note\n\nFirst paragraph of the note.\n\nSecond paragraph.\n",
        url="https://example.com/note.txt",
        source="notes",
    )
    assert article.title == "A plain note"
    assert article.text == "First paragraph of the note.\n\nSecond paragraph."
    assert article.summary == "First paragraph of the note."
    assert article.published is None
    assert article.canonical_url == "https://example.com/note.txt"


def test_lowercase_first_paragraph_is_kept_without_a_date_line() -> None:
    article = parse_plain_text(
        "Title\nthe body starts right here in lower case\n\nMore.", url="x.txt", source="s"
    )
    assert article.text == "the body starts right here in lower case\n\nMore."


def test_markdown_heading_is_the_title_and_body_is_rendered_safely() -> None:
    article = parse_markdown(
        "# Hello *World*\n\nSome **bold** and a [link](/next).\n\n- one\n- two\n\n"
        "<script>alert(1)</script>\n",
        url="https://blog.example/posts/hello.md",
        source="blog",
    )
    assert article.title == "Hello World"
    assert "<strong>bold</strong>" in article.html
    assert 'href="https://blog.example/next"' in article.html
    assert "<script" not in article.html
    assert article.text.startswith("Some bold and a link.\n\n- one\n- two")


@pytest.mark.parametrize("text", ["", "   \n\n \t \n"])
def test_empty_file_raises_extract_error(text: str) -> None:
    with pytest.raises(ExtractError, match=r"^/srv/empty\.txt: "):
        parse_plain_text(text, url="/srv/empty.txt", source="s")
    with pytest.raises(ExtractError, match=r"^/srv/empty\.md: "):
        parse_markdown(text, url="/srv/empty.md", source="s")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Oct 15, 2024 - 12:00", datetime(2024, 10, 15, 12, 0, tzinfo=UTC)),
        ("October 5, 2023", datetime(2023, 10, 5, tzinfo=UTC)),
        ("2024-02-29 08:30", datetime(2024, 2, 29, 8, 30, tzinfo=UTC)),
        ("15 March 2022, 09:15", datetime(2022, 3, 15, 9, 15, tzinfo=UTC)),
        ("The meeting on Oct 15, 2024 went well and everyone agreed", None),
        ("Oct 15, 2024 - 25:00", None),
        ("Not a date", None),
    ],
)
def test_parse_date_line(line: str, expected: datetime | None) -> None:
    assert parse_date_line(line) == expected
