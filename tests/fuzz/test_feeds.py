"""Feed bytes → articles (digest/ingest/feeds.py, feedbytes.py) on hostile input.

Whatever the bytes, parse_feed returns a FeedInfo and articles fit to show, or raises
SourceError with one line naming the source; repair_xml and sniff_text never raise at all.
"""

from __future__ import annotations

import json
from functools import cache

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest.errors import SourceError
from digest.ingest.feedbytes import repair_xml, sniff_text
from digest.ingest.feeds import looks_like_feed, parse_feed
from digest.models import Article, FeedInfo
from tests.fuzz.hostile import (
    FUZZ,
    NASTY_BYTES,
    assert_one_line,
    assert_safe_html,
    corpus_files,
    mutated,
    peak_memory,
    require,
)

SOURCE = "Hostile Wire"
pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

FEED_URL = "https://feeds.example.org/news.xml"
CONTENT_TYPES = (
    "",
    "application/rss+xml",
    "application/atom+xml; charset=iso-8859-1",
    "text/xml; charset=utf-16",
    "application/feed+json",
    "text/html; charset=bogus-charset",
    'application/xml; charset="',
)
# What must never reach Article.html: code, handlers, styles, script-bearing URLs.
MEMORY_BOUND = 40_000_000  # bytes, for inputs of 5-10 MB


@cache
def seeds() -> list[bytes]:
    paths = corpus_files("feeds_malformed", "*", 48, max_bytes=40_000)
    paths += corpus_files("feeds_realworld", "*.xml", 12, max_bytes=20_000)
    paths += corpus_files("feeds_realworld", "*.json", 6, max_bytes=20_000)
    files = [p for p in require(paths, "feeds_malformed") if p.suffix not in (".md", ".txt")]
    return [p.read_bytes() for p in files if p.name != "manifest.json"]


def check_parsed(data: bytes, content_type: str = "") -> None:
    """parse_feed's contract on any input."""
    try:
        info, articles = parse_feed(data, url=FEED_URL, source=SOURCE, content_type=content_type)
    except SourceError as error:
        assert_one_line(str(error), naming=SOURCE)
        return
    assert isinstance(info, FeedInfo)
    assert "\n" not in info.title and "\n" not in info.defect
    assert info.link.startswith(("http://", "https://"))
    for article in articles:
        check_article(article)


def check_article(article: Article) -> None:
    assert isinstance(article, Article)
    assert article.title and "\n" not in article.title
    assert article.url == "" or article.url.lower().startswith(("http://", "https://"))
    assert article.image == "" or article.image.lower().startswith(("http://", "https://"))
    assert_safe_html(article.html)
    assert "\n" not in article.summary
    assert article.source == SOURCE


@FUZZ
@given(data=st.binary(max_size=3000), content_type=st.sampled_from(CONTENT_TYPES))
def test_arbitrary_bytes_parse_or_raise_one_source_error(data: bytes, content_type: str) -> None:
    check_parsed(data, content_type)


@settings(FUZZ, max_examples=100)
@given(content_type=st.sampled_from(CONTENT_TYPES), data=st.data())
def test_damaged_corpus_feeds_parse_or_raise_one_source_error(
    content_type: str, data: st.DataObject
) -> None:
    check_parsed(data.draw(mutated(seeds())), content_type)


def xml_text() -> st.SearchStrategy[str]:
    """Text as a hostile publisher writes it into an element, sometimes CDATA-wrapped."""
    markup = st.sampled_from(
        [
            "<script>alert(1)</script>",
            '<a href="javascript:alert(1)">x</a>',
            '<a href="//[::1">broken host</a>',
            '<img src="data:image/png;base64,AAAA" onerror="x()">',
            "<b>bold</b>",
            "<svg onload=x()>",
            "\u2028",
            "&nbsp;",
            "]]>",
        ]
    )
    text = st.lists(st.text(max_size=30) | markup, max_size=6).map("".join)
    return st.one_of(
        text.map(lambda t: t.replace("&", "&amp;").replace("<", "&lt;")),
        text.map(lambda t: f"<![CDATA[{t.replace(']]>', '')}]]>"),
    )


@FUZZ
@given(
    items=st.lists(
        st.tuples(xml_text(), xml_text(), xml_text(), xml_text()), min_size=1, max_size=4
    ),
    atom=st.booleans(),
)
def test_hostile_item_fields_come_out_safe(
    items: list[tuple[str, str, str, str]], atom: bool
) -> None:
    """Generated RSS and Atom with hostile titles, links, bodies and dates: never a crash,
    and no article carries script, a script URL or a line break in its title."""
    if atom:
        entries = "".join(
            f"<entry><title type='html'>{t}</title><link href='{link}'/><id>{link}</id>"
            f"<updated>{d}</updated><content type='html'>{c}</content></entry>"
            for t, link, c, d in items
        )
        document = f'<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title>{entries}</feed>'
    else:
        entries = "".join(
            f"<item><title>{t}</title><link>{link}</link><description>{c}</description>"
            f"<pubDate>{d}</pubDate></item>"
            for t, link, c, d in items
        )
        document = f'<rss version="2.0"><channel><title>F</title>{entries}</channel></rss>'
    check_parsed(document.encode("utf-8", errors="surrogatepass"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
json_item = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "url": st.sampled_from(["https://a.example/1", "javascript:x()", "//[::1", ""])
        | json_values,
        "title": json_values,
        "content_html": xml_text() | json_values,
        "content_text": json_values,
        "summary": json_values,
        "date_published": st.sampled_from(["2024-02-30T00:00:00Z", "9999-12-31T23:59:59-23:59"])
        | json_values,
        "image": json_values,
        "tags": json_values,
        "attachments": json_values,
        "authors": json_values,
        "author": json_values,
    },
)


@FUZZ
@example(  # a moment past the last one UTC can name: was an OverflowError
    feed={"version": "1", "items": [{"title": "t", "date_published": "9999-12-31T23:59-23:59"}]},
    cut=None,
)
@given(
    feed=st.fixed_dictionaries(
        {"version": st.just("https://jsonfeed.org/version/1.1")},
        optional={
            "title": json_values,
            "home_page_url": json_values,
            "items": st.lists(json_item | json_values, max_size=4) | json_values,
            "language": json_values,
            "authors": json_values,
        },
    ),
    cut=st.none() | st.integers(1, 400),
)
def test_json_feeds_of_any_shape_parse_or_raise_one_source_error(
    feed: dict[str, object], cut: int | None
) -> None:
    """JSON Feeds with every field of the wrong type, whole or cut short."""
    text = json.dumps(feed, allow_nan=True)
    check_parsed(text.encode("utf-8", errors="surrogatepass")[:cut])


@FUZZ
@given(
    data=st.binary(max_size=400) | st.lists(st.sampled_from(NASTY_BYTES)).map(b"".join),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_repair_and_sniff_never_raise(data: bytes, content_type: str) -> None:
    """repair_xml and sniff_text take any bytes: a repaired document and one phrase per defect."""
    repaired, defects = repair_xml(data, content_type)
    assert isinstance(repaired, bytes)
    assert all(isinstance(d, str) and d and "\n" not in d for d in defects)
    assert isinstance(sniff_text(data), str)
    assert isinstance(looks_like_feed(data), bool)


def test_deeply_nested_json_feed_is_refused_in_bounded_memory() -> None:
    """5 MB of '[' inside a JSON Feed's items: one clear error, memory a few times the input."""
    data = b'{"version": "https://jsonfeed.org/version/1", "items": [' + b"[" * 5_000_000

    def parse() -> str:
        try:
            parse_feed(data, url=FEED_URL, source=SOURCE)
        except SourceError as error:
            return str(error)
        return ""

    message, peak = peak_memory(parse)
    assert_one_line(message, naming=SOURCE)
    assert "no recoverable items" in message
    assert peak < MEMORY_BOUND, peak


def test_deeply_nested_item_markup_is_parsed_in_bounded_memory() -> None:
    """An item body of 200,000 unclosed tags (2 MB): its article, memory bounded."""
    body = "<div><b>" * 100_000 + "deep text"
    document = (
        '<rss version="2.0"><channel><title>F</title><item><title>Deep</title>'
        f"<link>https://a.example/deep</link><description><![CDATA[{body}]]></description>"
        "</item></channel></rss>"
    ).encode()

    (_info, articles), peak = peak_memory(lambda: parse_feed(document, url=FEED_URL, source=SOURCE))
    assert [a.title for a in articles] == ["Deep"]
    assert "deep text" in articles[0].text
    assert peak < MEMORY_BOUND, peak
