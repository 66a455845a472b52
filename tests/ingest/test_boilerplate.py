"""Tests for digest/ingest/boilerplate.py: paragraphs that recur across a source's articles."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

import pytest

from digest.ingest.boilerplate import (
    MIN_ARTICLES,
    paragraph_fingerprints,
    recurring_paragraphs,
    strip_boilerplate,
)
from digest.ingest.feeds import parse_feed
from digest.ingest.normalize import html_to_text, shorten
from digest.models import Article

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

APPEAL = (
    "<p>Our reporting is free for everyone. If you value it, please support our newsrooms "
    "with a small monthly donation.</p>"
)
SEED = "000_545cff0c2edb726a.txt"
DESKS = ["harbour", "rail", "weather", "culture"]
STORIES = [
    "The city council approved the new budget after a long debate about the harbour.",
    "Rail workers in the north ended their strike once the ministry raised its pay offer.",
    "A storm closed the coastal road for a day and cut power to several thousand homes.",
    "The museum reopened its east wing with an exhibition of medieval maps and globes.",
]


def _article(number: int, *blocks: str, title: str = "", summary: str = "") -> Article:
    """An article as the feed parser builds one: text read from sanitised HTML."""
    html = "".join(blocks)
    text = html_to_text(html)
    return Article(
        id=f"id-{number}",
        url=f"https://news.example/{number}",
        canonical_url=f"https://news.example/{number}",
        title=title or f"Story number {number}",
        text=text,
        source="example",
        html=html,
        summary=summary or shorten(text, 300),
    )


def _story(number: int) -> str:
    return f"<p>{STORIES[number % len(STORIES)]} It is story {number}, told in full.</p>"


def _feed(corpus: Path, relative: str) -> list[Article]:
    path = corpus / "feeds_realworld" / relative
    if not path.is_file():
        pytest.skip(f"{relative} is not in the corpus")
    return parse_feed(path.read_bytes(), url="https://feed.example/", source=relative)[1]


# --- learning what recurs ------------------------------------------------------------------------


def test_an_appeal_in_three_of_four_articles_is_removed_from_text_and_html() -> None:
    articles = [_article(n, _story(n), APPEAL) for n in range(3)] + [_article(3, _story(3))]
    boilerplate = recurring_paragraphs(articles)
    stripped = [strip_boilerplate(article, boilerplate) for article in articles]
    for before, after in zip(articles[:3], stripped[:3], strict=True):
        assert "monthly donation" in before.text and "monthly donation" in before.html
        assert "monthly donation" not in after.text
        assert "monthly donation" not in after.html
        assert after.text == html_to_text(_story(int(before.id[-1])))
        assert after.html == _story(int(before.id[-1]))
    assert stripped[3] is articles[3]


def test_a_paragraph_in_only_two_of_four_articles_stays() -> None:
    plug = "<p>Sign up for our weekly newsletter to get every story first.</p>"
    articles = [
        _article(0, _story(0), plug, APPEAL),
        _article(1, _story(1), plug, APPEAL),
        _article(2, _story(2), APPEAL),
        _article(3, _story(3)),
    ]
    boilerplate = recurring_paragraphs(articles)
    after = strip_boilerplate(articles[0], boilerplate)
    assert "weekly newsletter" in after.text and "weekly newsletter" in after.html
    assert "monthly donation" not in after.text  # the one in three articles does go
    assert recurring_paragraphs(articles, min_articles=2) > boilerplate


def test_an_article_seen_twice_in_the_batch_counts_once() -> None:
    article = _article(0, _story(0), APPEAL)
    other = _article(1, _story(1), APPEAL)
    assert recurring_paragraphs([article, article, other]) == frozenset()
    assert recurring_paragraphs([article, other, _article(2, APPEAL)]) == paragraph_fingerprints(
        _article(9, APPEAL)
    )
    with pytest.raises(ValueError, match="at least 2"):
        recurring_paragraphs([article], min_articles=1)
    assert MIN_ARTICLES == 3


def test_fingerprints_fold_case_spacing_punctuation_and_a_few_numbers() -> None:
    one = _article(0, "<p>Support  US today. © 2024 News Example.</p>")
    two = _article(1, "<p>“support us today. © 2025 news example”</p>")
    assert paragraph_fingerprints(one) == paragraph_fingerprints(two)
    (fingerprint,) = paragraph_fingerprints(one)
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    # Where numbers are the news (versions, counts), they are not folded away.
    release = "<p>Version {} is out with {} fixes from {} people.</p>"
    assert paragraph_fingerprints(_article(0, release.format("9.1.0", 280, 12))) != (
        paragraph_fingerprints(_article(0, release.format("9.2.0", 310, 14)))
    )
    # Paragraphs with no letters or digits (separators) have none.
    assert paragraph_fingerprints(_article(0, "<p>* * *</p>")) == frozenset()


# --- stripping -----------------------------------------------------------------------------------


def test_an_article_without_boilerplate_is_returned_as_the_same_object() -> None:
    articles = [_article(n, _story(n), APPEAL) for n in range(3)]
    plain = _article(7, _story(7), "<p>A second paragraph of its own.</p>")
    boilerplate = recurring_paragraphs(articles)
    assert strip_boilerplate(plain, boilerplate) is plain
    assert strip_boilerplate(articles[0], frozenset()) is articles[0]


def test_a_footer_naming_the_article_itself_recurs_once_its_title_is_masked() -> None:
    def footer(number: int, title: str) -> str:
        return (
            f'<p>The post <a href="https://news.example/{number}">{title}</a> appeared first '
            'on <a href="https://news.example/">News Example</a>.</p>'
        )

    titles = ["Harbour budget passes", "Rail strike ends", "Storm closes the coast road"]
    articles = [
        _article(n, _story(n), footer(n, title), title=title) for n, title in enumerate(titles)
    ]
    boilerplate = recurring_paragraphs(articles)
    for article in articles:
        after = strip_boilerplate(article, boilerplate)
        assert "appeared first on" not in after.text
        assert "appeared first on" not in after.html
        assert after.text == article.text.split("\n\n")[0]


def test_a_related_block_takes_its_links_along() -> None:
    def related(number: int) -> str:  # the links differ from article to article
        desk, other = DESKS[number], DESKS[number - 1]
        return (
            "<p>Related:</p>"
            f'<ul><li><a href="https://news.example/{desk}">Earlier on {desk}</a></li>'
            f'<li><a href="https://news.example/{other}">Earlier on {other}</a></li></ul>'
            f'<p><a href="https://news.example/opinion/{desk}">Opinion: why {desk}</a></p>'
        )

    def signed(number: int) -> str:  # not a link: the related block ends before it
        return f"<p>Written by the {DESKS[number]} desk.</p>"

    articles = [_article(n, _story(n), related(n), signed(n)) for n in range(4)]
    boilerplate = recurring_paragraphs(articles)
    after = strip_boilerplate(articles[1], boilerplate)
    assert after.text == html_to_text(_story(1) + signed(1))
    assert "Related" not in after.html and "Earlier" not in after.html
    assert "Opinion" not in after.html and "<ul>" not in after.html
    assert after.html == _story(1) + signed(1)
    # Only the lead-in recurs; the links go because they follow it.
    assert len(boilerplate) == 1


def test_a_recurring_section_heading_stays_while_its_section_does() -> None:
    articles = [
        _article(n, _story(n), "<h2>Conclusion</h2>", f"<p>All about {DESKS[n]}.</p>", APPEAL)
        for n in range(3)
    ]
    boilerplate = recurring_paragraphs(articles)
    after = strip_boilerplate(articles[0], boilerplate)
    assert "<h2>Conclusion</h2>" in after.html and "\n\nConclusion\n\n" in after.text
    assert "monthly donation" not in after.text


def test_a_single_recurring_word_goes_too() -> None:
    articles = [
        _article(n, _story(n), "<p>Advertisement</p>", f"<p>More on {DESKS[n]} follows.</p>")
        for n in range(3)
    ]
    boilerplate = recurring_paragraphs(articles)
    after = strip_boilerplate(articles[2], boilerplate)
    assert "Advertisement" in articles[2].text
    assert "Advertisement" not in after.text and "Advertisement" not in after.html
    assert after.text.endswith("More on weather follows.")


def test_line_broken_paragraphs_inside_one_element_are_found() -> None:
    articles = [
        _article(n, f"<p>{STORIES[n]}<br><br> Questions? Visit us on the forum.<br></p>")
        for n in range(3)
    ]
    boilerplate = recurring_paragraphs(articles)
    after = strip_boilerplate(articles[0], boilerplate)
    assert after.text == STORIES[0]
    assert after.html == f"<p>{STORIES[0]}</p>"


def test_boilerplate_inside_a_quote_goes_and_an_emptied_quote_with_it() -> None:
    articles = [
        _article(
            n, _story(n), f"<blockquote><p>Said the {DESKS[n]} editor.</p>{APPEAL}</blockquote>"
        )
        for n in range(2)
    ] + [_article(2, _story(2), f"<blockquote>{APPEAL}</blockquote>")]
    boilerplate = recurring_paragraphs(articles)
    first, last = (strip_boilerplate(articles[i], boilerplate) for i in (0, 2))
    assert first.html == _story(0) + "<blockquote><p>Said the harbour editor.</p></blockquote>"
    assert last.html == _story(2)


def test_an_article_without_html_loses_the_text_only() -> None:
    articles = [_article(n, _story(n), APPEAL) for n in range(3)]
    text_only = dataclasses.replace(articles[0], html="")
    after = strip_boilerplate(text_only, recurring_paragraphs(articles))
    assert after.text == html_to_text(_story(0)) and after.html == ""


def test_stripping_never_empties_an_article() -> None:
    articles = [_article(n, _story(n), APPEAL) for n in range(3)]
    boilerplate = recurring_paragraphs(articles)
    only_appeal = _article(5, APPEAL)
    assert strip_boilerplate(only_appeal, boilerplate) is only_appeal
    # A scrap left of a long article means the story itself recurred: keep the whole.
    long_appeal = "<p>" + " ".join(["Please give what you can to keep us going."] * 6) + "</p>"
    batch = [_article(n, _story(n), long_appeal) for n in range(3)]
    scrap = _article(6, "<p>Short note.</p>", long_appeal)
    assert strip_boilerplate(scrap, recurring_paragraphs(batch)) is scrap
    # ...while a short article loses a short footer.
    short = _article(7, "<p>Short note.</p>", APPEAL)
    assert strip_boilerplate(short, boilerplate).text == "Short note."


def test_a_summary_cut_from_removed_text_is_cut_again() -> None:
    articles = [_article(n, "<p>Advertisement</p>", _story(n)) for n in range(3)]
    boilerplate = recurring_paragraphs(articles)
    after = strip_boilerplate(articles[0], boilerplate)
    assert articles[0].summary.startswith("Advertisement")
    assert after.summary == shorten(html_to_text(_story(0)), 300)
    # A feed's own description carrying the same footer loses it too.
    batch = [_article(n, _story(n), APPEAL) for n in range(3)]
    described = _article(
        8, _story(8), APPEAL, summary="A short description. " + html_to_text(APPEAL)
    )
    after = strip_boilerplate(described, recurring_paragraphs(batch))
    assert after.summary == "A short description."


def test_the_seed_articles_related_marker_and_donation_appeal_recur_away(seeds: Path) -> None:
    seed = (seeds / SEED).read_text(encoding="utf-8")
    tail = [html.escape(block) for block in seed[seed.index("Related:") :].split("\n\n")]
    assert tail[0] == "Related:" and "Become a patron" in tail[1]
    articles = [
        _article(
            n, _story(n), f"<p>Written by the {DESKS[n]} desk.</p>", *(f"<p>{t}</p>" for t in tail)
        )
        for n in range(3)
    ]
    boilerplate = recurring_paragraphs(articles)
    after = strip_boilerplate(articles[0], boilerplate)
    assert after.text == html_to_text(_story(0)) + "\n\nWritten by the harbour desk."
    assert "Related" not in after.html and "patron" not in after.html


# --- real feeds ----------------------------------------------------------------------------------


def test_guardian_continue_reading_link_is_stripped_from_every_item(corpus: Path) -> None:
    articles = _feed(corpus, "rss-parser/guardian.rss")
    boilerplate = recurring_paragraphs(articles)
    for article in articles:
        assert article.text.endswith("Continue reading...")
        after = strip_boilerplate(article, boilerplate)
        assert not after.text.endswith("Continue reading...")
        assert "Continue reading" not in after.html
        assert article.text.startswith(after.text)
        assert after.text == html_to_text(after.html)
        assert "Continue reading" not in after.summary


def test_medium_originally_published_footer_is_matched_with_titles_masked(corpus: Path) -> None:
    articles = _feed(corpus, "rss-parser/content-encoded.rss")
    footer = "was originally published in Invironment on Medium"
    assert sum(footer in article.text for article in articles) >= 5
    boilerplate = recurring_paragraphs(articles)
    for article in articles:
        after = strip_boilerplate(article, boilerplate)
        assert footer not in after.text and footer not in after.html


def test_real_feeds_keep_section_headings_and_numbered_news(corpus: Path) -> None:
    papers = _feed(corpus, "rome/rss_1.0-ns-on-channel.xml")
    boilerplate = recurring_paragraphs(papers)
    assert boilerplate  # "Abstract", "Methods", "Results" recur in most items...
    assert all(strip_boilerplate(paper, boilerplate) is paper for paper in papers)  # ...and stay
    releases = _feed(corpus, "netnewswire/qemu.atom")
    boilerplate = recurring_paragraphs(releases)
    for release in releases:
        after = strip_boilerplate(release, boilerplate)
        assert "Thank you to everybody who contributed" not in after.text
        if "like to announce the availability of the QEMU" in release.text:
            assert "like to announce the availability of the QEMU" in after.text
