"""Tests for digest/ingest/feeds.py: real feeds, broken feeds and hostile feeds."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from digest.errors import SourceError
from digest.ingest.feeds import looks_like_feed, parse_feed
from digest.models import article_id

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

FEED_FORMATS = frozenset(
    {"rss2.0", "atom1.0", "rss1.0/rdf", "jsonfeed", "json", "rss0.90/rdf", "rss0.91", "rss0.92"}
    | {"rss0.94", "rss?", "atom0.3"}
)
SMALL_FEED_BYTES = 150_000  # feedparser needs seconds for the few megabyte-sized feeds
# Items that carry nothing a reader could be shown (no title, link or text): skipped on purpose.
EMPTY_ITEMS = {
    "netnewswire/authors.json": 4,  # items with only an id and empty content_html
    "rss-parser/incomplete-fields.atom": 1,  # <entry><author></author></entry>
    "rss-parser/missing-fields.atom": 1,  # <entry> with only a tag: id, no web link
    "rome/dublin-core-date.xml": 1,  # an item holding only dates
    "miniflux/no_encoding_ISO-8859-1.xml": 1,  # one <item> with empty title, link and text
}


def _manifest(corpus: Path, folder: str) -> list[dict[str, Any]]:
    return json.loads((corpus / folder / "manifest.json").read_text(encoding="utf-8"))


def _parse(corpus: Path, relative: str) -> tuple[Any, list[Any]]:
    data = (corpus / relative).read_bytes()
    return parse_feed(data, url="https://feeds.example/feed", source=relative)


def test_rss20_feed_items_have_titles_links_and_utc_dates(corpus: Path) -> None:
    info, articles = _parse(corpus, "feeds_realworld/rss-parser/guardian.rss")
    assert (info.title, info.format, info.defect) == ("The Guardian", "rss20", "")
    assert len(articles) == 55
    first = articles[0]
    assert first.title == "Trump State of the Union address promised unity but emphasized discord"
    assert first.url.startswith("https://www.theguardian.com/us-news/2018/jan/31/")
    assert first.id == article_id(first.canonical_url)
    assert first.published == datetime(2018, 1, 31, 7, 26, 5, tzinfo=UTC)
    assert first.author == "David Smith in Washington"
    assert "US politics" in first.categories
    assert first.language == "en-gb"
    assert first.text and "<" not in first.text
    assert first.html.startswith("<p>")
    assert len(first.summary) <= 300
    assert all(a.title and a.url.startswith("https://") for a in articles)
    assert all(a.source == "feeds_realworld/rss-parser/guardian.rss" for a in articles)


def test_atom_feed_items_are_recovered(corpus: Path) -> None:
    info, articles = _parse(corpus, "feeds_realworld/rss-parser/heise.atom")
    assert info.format == "atom10"
    assert info.title == "heise developer neueste Meldungen"
    assert len(articles) == 15
    assert articles[0].title == "Java-Anwendungsserver: Red Hat gibt WildFly 10 frei"
    assert articles[0].guid == "http://heise.de/-3088438"
    assert all(a.published and a.published.tzinfo is UTC for a in articles)


def test_rdf_feed_items_are_recovered(corpus: Path) -> None:
    info, articles = _parse(corpus, "feeds_realworld/rome/slashdot.xml")
    assert (info.title, info.format) == ("Slashdot", "rss10")
    assert len(articles) == 10
    assert articles[0].title == "The Prisoner To Be Remade On U.K. TV"
    assert articles[0].categories == ("tv",)
    assert all(a.url.startswith("http://") for a in articles)


def test_json_feed_is_parsed_without_feedparser(corpus: Path) -> None:
    info, articles = _parse(corpus, "feeds_realworld/netnewswire/DaringFireball.json")
    assert (info.title, info.format, info.link) == (
        "Daring Fireball",
        "json10",
        "https://daringfireball.net/",
    )
    assert len(articles) == 48
    first = articles[0]
    assert first.title == "The Talk Show: ‘I Do Like Throwing a Baby’"
    assert first.url == "https://daringfireball.net/linked/2017/06/26/the-talk-show-195"
    assert first.author == "John Gruber"
    assert first.published == datetime(2017, 6, 27, 0, 54, 17, tzinfo=UTC)


def test_json_feed_version_1_1_is_named(corpus: Path) -> None:
    info, articles = _parse(corpus, "feeds_realworld/netnewswire/3960.json")
    assert info.format == "json11"
    assert len(articles) == 20


def _check_real_feeds(corpus: Path, *, small: bool) -> int:
    checked = 0
    for record in _manifest(corpus, "feeds_realworld"):
        if record["format"] not in FEED_FORMATS or not record["wellformed"]:
            continue
        if (record["bytes"] <= SMALL_FEED_BYTES) != small:
            continue
        expected = record.get("fp_entries", record["items"])
        info, articles = _parse(corpus, f"feeds_realworld/{record['file']}")
        skipped = EMPTY_ITEMS.get(record["file"], 0)
        assert len(articles) == expected - skipped, record["file"]
        assert all(article.title for article in articles), record["file"]
        checked += 1
    return checked


def test_every_small_real_feed_yields_each_item_that_has_content(corpus: Path) -> None:
    assert _check_real_feeds(corpus, small=True) > 120


@pytest.mark.slow
def test_every_large_real_feed_yields_each_item_that_has_content(corpus: Path) -> None:
    assert _check_real_feeds(corpus, small=False) > 10


def test_malformed_feed_recovers_items_and_names_the_defect(corpus: Path) -> None:
    info, articles = _parse(corpus, "feeds_malformed/feedjira/PaulDixExplainsNothingWFW.xml")
    assert len(articles) == 5
    assert "unbound prefix" in info.defect
    assert "\n" not in info.defect


def test_whitespace_before_the_xml_declaration_is_repaired(corpus: Path) -> None:
    info, articles = _parse(corpus, "feeds_malformed/feedjira/TechCrunch.xml")
    assert len(articles) == 20
    assert info.defect == "whitespace before the XML declaration"


def test_truncated_json_feed_keeps_its_complete_items(corpus: Path) -> None:
    info, articles = _parse(corpus, "feeds_malformed/netnewswire/allthis-partial.json")
    assert info.defect.startswith("invalid JSON")
    assert [a.title for a in articles][:1] == ["Last thoughts on modifier keys"]
    assert len(articles) >= 2


def test_utf16_feed_without_byte_order_mark_is_read(corpus: Path) -> None:
    info, articles = _parse(corpus, "feeds_malformed/simplepie/feed-utf16le.xml")
    assert [a.title for a in articles] == ["Test feed title 1"]
    assert "utf-16" in info.defect


@pytest.mark.parametrize(
    ("relative", "feed_title", "titles"),
    [
        ("miniflux/windows-1252-incorrect-prolog.xml", "Euro €", []),
        ("miniflux/utf8-incorrect-prolog.xml", "테스트 피드", ["Café"]),
        ("miniflux/windows-1252.xml", "Euro €", []),
        ("miniflux/iso-8859-1.xml", "Café", []),
        ("miniflux/koi8r.xml", "Пример RSS ленты", ["Первая новость", "Вторая новость"]),
    ],
)
def test_declared_and_mislabelled_encodings_give_the_right_text(
    corpus: Path, relative: str, feed_title: str, titles: list[str]
) -> None:
    info, articles = _parse(corpus, f"feeds_malformed/{relative}")
    assert (info.title, [a.title for a in articles]) == (feed_title, titles)


def test_latin1_feed_without_a_declaration_is_read_as_windows_1252(corpus: Path) -> None:
    # A real feed: "é\xa0»" is valid UTF-8 by chance, yet the document as a whole is Latin-1.
    info, articles = _parse(corpus, "feeds_malformed/miniflux/no_encoding_ISO-8859-1.xml")
    assert any("« doué », « surdoué »" in article.text for article in articles)
    assert info.defect == "no encoding declared and not UTF-8; read as windows-1252"


def test_no_malformed_feed_raises_anything_but_source_error(corpus: Path) -> None:
    recovered = 0
    for record in _manifest(corpus, "feeds_malformed"):
        relative = f"feeds_malformed/{record['file']}"
        try:
            _, articles = _parse(corpus, relative)
        except SourceError as error:
            assert str(error).startswith(f"{relative}: ")
            assert "\n" not in str(error)
            continue
        recovered += len(articles)
    assert recovered >= 70


@pytest.mark.parametrize(
    "relative",
    [
        "feeds_malformed/gofeed/unknown_feed.xml",
        "feeds_malformed/gofeed/empty_feed.xml",
        "feeds_malformed/rss-parser/unrecognized.rss",
        "feeds_malformed/gofeed/invalid.json",
    ],
)
def test_documents_with_nothing_recoverable_raise_source_error(corpus: Path, relative: str) -> None:
    with pytest.raises(SourceError, match=f"^{relative}: "):
        _parse(corpus, relative)


def test_looks_like_feed_tolerates_bom_and_whitespace() -> None:
    rss = b'<?xml version="1.0"?><rss version="2.0"><channel></channel></rss>'
    assert looks_like_feed(b"\xef\xbb\xbf\n\n  " + rss)
    assert looks_like_feed(b"<!-- generator --><!DOCTYPE rss><rss version='0.91'></rss>")
    assert looks_like_feed(b'<feed xmlns="http://www.w3.org/2005/Atom"></feed>')
    assert looks_like_feed(b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">')
    assert looks_like_feed(b' {"version": "https://jsonfeed.org/version/1.1", "items": []}')
    assert looks_like_feed("<rss version='2.0'></rss>".encode("utf-16"))


def test_looks_like_feed_rejects_pages_and_other_json() -> None:
    assert not looks_like_feed(b"<!DOCTYPE html><html><head><title>x</title></head></html>")
    assert not looks_like_feed(b'{"items": [1, 2], "total": 2}')
    assert not looks_like_feed(b"Plain text, no markup.")
    assert not looks_like_feed(b"")


def test_feed_html_is_sanitised_and_links_absolutised() -> None:
    feed = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>
<title>T</title><link>https://site.example/</link>
<item><title>Story</title><link>https://site.example/news/story.html?utm_source=rss</link>
<description>Short teaser.</description>
<content:encoded><![CDATA[<p onclick="x()">Body <a href="/more">more</a></p>
<script>alert(1)</script><img src="pic.jpg" onerror="alert(2)">]]></content:encoded>
<enclosure url="https://cdn.example/lead.jpg" type="image/jpeg" length="1"/>
</item></channel></rss>"""
    _, [article] = parse_feed(feed, url="https://site.example/feed", source="site")
    assert article.canonical_url == "https://site.example/news/story.html"
    assert article.summary == "Short teaser."
    assert "script" not in article.html and "alert" not in article.html
    assert "onclick" not in article.html and "onerror" not in article.html
    assert 'href="https://site.example/more"' in article.html
    assert article.image == "https://cdn.example/lead.jpg"
    assert article.text == "Body more"


def test_relative_links_in_content_honour_xml_base(corpus: Path) -> None:
    # ROME's xml:base suite: each entry links to the URL its link text spells out.
    _, articles = _parse(corpus, "feeds_realworld/rome/atom_1.0_b.xml")
    linked = [a for a in articles if "<a " in a.html]
    assert len(linked) >= 10
    for article in linked:
        assert re.findall(r'<a href="([^"]+)"', article.html) == [article.text]


def test_billion_laughs_is_not_expanded() -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    feed = (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n' + "\n".join(entities) + "\n]>\n"
        '<rss version="2.0"><channel><title>T</title><item><title>&lol9;</title>'
        "<link>https://x.example/b</link></item></channel></rss>"
    ).encode()
    started = time.monotonic()
    try:
        _, articles = parse_feed(feed, url="https://x.example/feed", source="lol")
    except SourceError:
        articles = []
    assert time.monotonic() - started < 2
    assert all(len(a.title) < 1000 and len(a.text) < 1000 for a in articles)
