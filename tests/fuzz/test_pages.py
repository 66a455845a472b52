"""Page HTML → article (digest/ingest/extract.py, boilerplate.py) on hostile input.

extract_document takes any bytes under any name and content type: it returns an Article or a
feed's (FeedInfo, articles), or raises a DigestError whose one line names the document.
extract_page, decode_document and the boilerplate stripper hold their contracts the same way.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from functools import cache

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest.errors import DigestError, ExtractError
from digest.ingest.boilerplate import (
    paragraph_fingerprints,
    recurring_paragraphs,
    strip_boilerplate,
)
from digest.ingest.extract import decode_document, extract_document, extract_page
from digest.models import Article, FeedInfo
from tests.fuzz.hostile import (
    CORPUS,
    FUZZ,
    NASTY_BYTES,
    assert_one_line,
    assert_safe_html,
    mutated,
    peak_memory,
    require,
)

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

SOURCE = "Hostile Pages"
LOCATIONS = (
    "https://news.example.org/story",
    "https://news.example.org/story.html",
    "https://news.example.org/notes.txt",
    "https://news.example.org/notes.md",
    "https://news.example.org/feed.xml",
    "articles/local.htm",
)
CONTENT_TYPES = (
    "",
    "text/html",
    "text/html; charset=shift_jis",
    "text/plain; charset=utf-16",
    "text/markdown",
    "application/octet-stream",
    "text/html; charset=no-such-charset",
)
MEMORY_BOUND = 40_000_000  # bytes, for a 1 MB page (16 MB measured): a few trees of it


@cache
def page_seeds() -> list[bytes]:
    folder = CORPUS / "extraction_readability_testpages"
    if not (folder / "manifest.json").is_file():
        require([], "extraction_readability_testpages")
    pages = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["pages"]
    small = sorted(p["name"] for p in pages if p.get("source_bytes", 10**9) <= 30_000)[:12]
    return [gzip.decompress((folder / "pages" / n / "source.html.gz").read_bytes()) for n in small]


def check_article(article: Article, location: str) -> None:
    assert isinstance(article, Article)
    assert article.title.strip() and "\n" not in article.title
    assert_safe_html(article.html)
    assert "\n" not in article.summary
    assert article.url == location


def check_extracted(data: bytes, location: str, content_type: str) -> None:
    """extract_document's contract on any input."""
    try:
        result = extract_document(data, location=location, source=SOURCE, content_type=content_type)
    except DigestError as error:
        # A feed's errors name the source, a page's the document.
        assert_one_line(str(error), naming=SOURCE if SOURCE in str(error) else location)
        return
    if isinstance(result, Article):
        check_article(result, location)
        return
    info, articles = result
    assert isinstance(info, FeedInfo)
    assert all(isinstance(article, Article) for article in articles)


@settings(FUZZ, max_examples=80)
@given(
    data=st.binary(max_size=2000)
    | st.lists(st.sampled_from(NASTY_BYTES), max_size=30).map(b"".join),
    location=st.sampled_from(LOCATIONS),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_any_document_gives_an_article_or_one_clear_error(
    data: bytes, location: str, content_type: str
) -> None:
    check_extracted(data, location, content_type)


@settings(FUZZ, max_examples=25)
@given(data=st.data(), content_type=st.sampled_from(CONTENT_TYPES[:3]))
def test_damaged_real_pages_give_an_article_or_one_clear_error(
    data: st.DataObject, content_type: str
) -> None:
    page = data.draw(mutated(page_seeds()))
    check_extracted(page, LOCATIONS[1], content_type)


tags = st.sampled_from(
    ["p", "div", "article", "h1", "h2", "a", "b", "ul", "li", "table", "td", "script", "style",
     "iframe", "svg", "nav", "footer", "template", "noscript", "title", "meta", "link", "base"]
)  # fmt: skip
attributes = st.sampled_from(
    [
        "",
        ' href="javascript:alert(1)"',
        ' href="//[::1"',
        ' src="data:text/html,x"',
        ' onclick="x()"',
        ' rel="canonical" href="http://[bad"',
        ' property="article:published_time" content="9999-12-31T23:59-23:59"',
        ' lang="\u0000"',
        ' style="background:url(javascript:x)"',
    ]
)


@st.composite
def tag_soup(draw: st.DrawFn) -> str:
    """Word-rich HTML with unbalanced, hostile and misplaced elements."""
    parts = ["<html><head><title>", draw(st.text(max_size=40)), "</title>"]
    for _ in range(draw(st.integers(1, 25))):
        tag = draw(tags)
        words = " ".join(draw(st.lists(st.text(min_size=1, max_size=12), max_size=15)))
        closing = draw(st.sampled_from([f"</{tag}>", "", "</p>", "</div></div>"]))
        parts.append(f"<{tag}{draw(attributes)}>{words} ordinary words of a story{closing}")
    return "".join(parts)


@settings(FUZZ, max_examples=40)
@example(  # a published time past the last moment UTC can name: was an OverflowError
    html='<meta property="article:published_time" content="9999-12-31T23:59-23:59"><p>'
    + "Plenty of words in a paragraph of this story. " * 5
)
@given(html=tag_soup())
def test_tag_soup_gives_a_safe_article_or_one_clear_error(html: str) -> None:
    url = "https://news.example.org/soup"
    try:
        article = extract_page(html, url=url, source=SOURCE)
    except ExtractError as error:
        assert_one_line(str(error), naming=url)
        return
    check_article(article, url)


@FUZZ
@given(data=st.binary(max_size=600), content_type=st.sampled_from(CONTENT_TYPES))
def test_decode_document_reads_any_bytes(data: bytes, content_type: str) -> None:
    """Every byte sequence decodes to text (BOM, charset, UTF-8, then windows-1252); ASCII
    without a declared charset reads as itself."""
    text = decode_document(data, content_type)
    assert isinstance(text, str)
    if data.isascii() and b"\x00" not in data and "charset" not in content_type:
        assert text == data.decode("ascii")


paragraphs = st.lists(
    st.sampled_from(
        [
            "Support us: donate today.",
            "Related articles",
            "© 2024 Example",
            "<b>Share this</b>",
            "x" * 3,
        ]
    )
    | st.text(min_size=1, max_size=60),
    min_size=1,
    max_size=8,
)


@FUZZ
@given(
    bodies=st.lists(paragraphs, min_size=3, max_size=5), wrap=st.sampled_from(["p", "li", "div"])
)
def test_boilerplate_stripping_only_ever_removes_whole_paragraphs(
    bodies: list[list[str]], wrap: str
) -> None:
    """Recurring paragraphs learned from hostile articles: stripping keeps an Article whose
    paragraphs are some of the original's, in order, and never raises."""
    articles = [
        Article(
            id=f"a{n}",
            url=f"https://news.example.org/{n}",
            title=f"Story {n}",
            text="\n\n".join(body),
            source=SOURCE,
            published=None,
            html="".join(f"<{wrap}>{p}</{wrap}>" for p in body),
            summary=body[0][:300],
        )
        for n, body in enumerate(bodies)
    ]
    learned = recurring_paragraphs(articles)
    for article in articles:
        assert all(isinstance(f, str) for f in paragraph_fingerprints(article))
        stripped = strip_boilerplate(article, learned)
        assert dataclasses.replace(stripped, text="", html="", summary="") == dataclasses.replace(
            article, text="", html="", summary=""
        )
        kept = stripped.text.split("\n\n")
        original = iter(article.text.split("\n\n"))
        assert all(paragraph in original for paragraph in kept)  # a subsequence


def test_huge_flat_page_is_extracted_in_bounded_memory() -> None:
    """1 MB of paragraphs: the article, with memory a bounded multiple of the page."""
    paragraph = "<p>" + "Plenty of ordinary words make up this long story. " * 8 + "</p>"
    page = f"<html><body><article><h1>Long</h1>{paragraph * 2_500}</article></body></html>"
    article, peak = peak_memory(
        lambda: extract_page(page.encode(), url="https://news.example.org/long", source=SOURCE)
    )
    assert article.title == "Long"
    assert peak < MEMORY_BOUND, peak
