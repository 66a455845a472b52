"""Template filters: dates, link hosts, safe links, and shortening article text."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from digest.render.environment import template_environment
from digest.render.filters import (
    domain,
    format_day,
    headline,
    http_url,
    lead,
    paragraphs,
    reading_minutes,
    truncate_characters,
    truncate_words,
    wrap,
)

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it


def test_format_day_uses_locale_and_moves_aware_times_to_the_zone():
    late = datetime(2025, 3, 2, 23, 30, tzinfo=UTC)
    assert format_day(late, locale="en", timezone="UTC") == "March 2, 2025"
    assert format_day(late, locale="fr", timezone="Europe/Paris") == "3 mars 2025"
    assert (
        format_day(date(2025, 3, 2), locale="en", timezone="UTC", style="medium") == "Mar 2, 2025"
    )
    assert format_day(date(2025, 3, 2), locale="pt-BR", timezone="UTC") == "2 de março de 2025"


def test_date_filter_reads_locale_and_timezone_from_the_template():
    template = template_environment().from_string("{{ when | date('medium') }}|{{ none | date }}")
    when = datetime(2025, 3, 2, 23, 30, tzinfo=UTC)
    assert (
        template.render(when=when, none=None, locale="de", timezone="Europe/Berlin")
        == "03.03.2025|"
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://www.bbc.co.uk/news/x", "bbc.co.uk"),
        ("http://Example.ORG:8080/a", "example.org"),
        ("not a url", ""),
    ],
)
def test_domain(url, host):
    assert domain(url) == host


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://a.example/x", True),
        ("HTTP://a.example", True),
        ("javascript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("data:text/html,hi", False),
        ("", False),
    ],
)
def test_http_url_keeps_only_web_links(url, kept):
    assert http_url(url) == (url if kept else "")


def test_truncate_words_cuts_at_a_word_and_marks_the_cut():
    assert truncate_words("one  two\nthree", 5) == "one two three"
    assert truncate_words("one, two, three, four", 2) == "one, two…"


def test_truncate_characters_cuts_after_a_word_and_counts_the_mark():
    assert truncate_characters("one  two\nthree", 13) == "one two three"
    assert truncate_characters("abc defgh, ijk", 11) == "abc defgh…"
    assert truncate_characters("abc defgh ijk", 10) == "abc defgh…"
    assert truncate_characters("x" * 50, 10) == "x" * 9 + "…"


def test_lead_keeps_whole_opening_sentences_within_the_character_limit():
    text = "First one here. Second sentence is here! Third? Fourth is never shown."
    assert lead(text) == "First one here. Second sentence is here!"
    assert lead(text, sentences=3) == "First one here. Second sentence is here! Third?"
    assert lead(text, sentences=3, characters=40) == "First one here. Second sentence is here!"
    assert lead(text, sentences=3, characters=39) == "First one here."
    assert lead("First\n\n  one here.") == "First one here."
    assert lead("") == ""


def test_lead_cuts_a_long_first_sentence_after_a_word_at_about_200_characters():
    sentence = "The council " + "voted again and " * 30 + "won. Short second."
    cut = lead(sentence)
    # "…and" would fit in 200 characters only without the mark; the mark is counted.
    assert cut == "The council " + "voted again and " * 11 + "voted again…"
    assert len(cut) == 200


def test_paragraphs_split_on_blank_lines():
    assert paragraphs("Hello,\n\n  this is\n  the week.\n \n\nBye") == [
        "Hello,",
        "this is the week.",
        "Bye",
    ]


def test_wrap_fills_columns_without_breaking_urls():
    url = "https://example.org/" + "x" * 90
    lines = wrap(f"Read the whole story at {url} today please", 40, indent="  ", first="* ").split(
        "\n"
    )
    assert lines[0].startswith("* Read") and all(line.startswith("  ") for line in lines[1:])
    assert f"  {url}" in lines
    assert all(len(line) <= 40 for line in lines if url not in line)


def test_headline_is_one_line_without_direction_overrides_and_capped():
    # U+202E would turn the rest of the line around ("fdp.exe" shown as "exe.pdf").
    assert headline("Invoice\u202efdp.exe\r\nSecond\tline") == "Invoicefdp.exe Second line"
    assert headline("\u2066isolated\u2069 soft\u00adhyphen zero\u200bwidth") == (
        "isolated softhyphen zerowidth"
    )
    # Right-to-left marks are part of ordinary Arabic and Hebrew text: they stay.
    assert headline("שלום\u200f 2025") == "שלום\u200f 2025"
    long = headline("word " * 2000)
    assert len(long) == 200 and long.endswith("…")
    assert len(headline("x" * 5000)) == 200


def test_headline_unescapes_markup_so_autoescape_escapes_it_once():
    env = template_environment()
    source = "{% macro label() %}{{ name }}{% endmacro %}{{ label() | headline }}"
    assert env.from_string(source).render(name="Arts & <Culture>") == "Arts &amp; &lt;Culture&gt;"


def test_reading_minutes_counts_words_and_cjk_characters():
    assert reading_minutes("") == 1
    assert reading_minutes("word " * 230) == 1
    assert reading_minutes("word " * 1150) == 5
    assert reading_minutes("字" * 2500) == 5  # 500 characters a minute
    assert reading_minutes("word " * 460 + "字" * 1000) == 4


def test_number_filter_groups_digits_the_locale_s_way():
    render = template_environment().from_string("{{ n | number }}").render
    assert render(n=1234567, locale="en") == "1,234,567"
    assert render(n=1234567, locale="de") == "1.234.567"
    assert render(n=1234567, locale="fr").replace("\u202f", " ") == "1 234 567"


def test_wrap_breaks_japanese_between_characters_counting_two_columns_each():
    text = (
        "確認リンクの有効期限は48時間です。お心当たりがない場合は、このメールを無視してください。"
    )
    lines = wrap(text, 30, indent="  ").split("\n")
    assert len(lines) > 1 and "".join(line.strip() for line in lines) == text
    widths = [sum(2 if ord(char) > 0x2FFF else 1 for char in line) for line in lines]
    # Closing punctuation never starts a line: it hangs at the end of the one before, the only
    # way a line may pass the width.
    assert all(w <= 30 or line[-1] in "、。" for w, line in zip(widths, lines, strict=True))
    assert max(widths) <= 32
    assert not any(line.strip()[0] in "、。" for line in lines)


def test_wrap_keeps_a_url_whole_inside_japanese_text():
    url = "https://digest.example.org/confirm/" + "a" * 40
    lines = wrap(f"こちらをクリックしてください {url} 以上です。", 40).split("\n")
    assert url in lines
