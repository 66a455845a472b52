"""Tests for digest/ingest/extract.py: pages, dispatch by kind, decoding and JSON shape."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.errors import ExtractError
from digest.ingest.extract import (
    article_to_json,
    decode_document,
    extract_document,
    extract_page,
    feed_to_json,
)
from digest.models import Article, FeedInfo

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

ARTICLE_KEYS = {
    "id", "title", "url", "canonical_url", "published", "author", "language", "text", "html",
    "image", "source", "summary", "categories", "guid",
}  # fmt: skip

PARAGRAPH = (
    "The city council voted on Tuesday to extend the tram line to the northern districts, "
    "a project that residents have been requesting for more than a decade and that planners "
    "say will cut commuting times by a third. "
)
PAGE = f"""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8">
<title>Council extends tram line | Example News</title>
<link rel="canonical" href="/local/tram-line-extended?utm_source=twitter">
<meta property="og:title" content="Council extends tram line">
<meta property="og:image" content="/img/tram.jpg">
<meta property="article:published_time" content="2024-03-05T09:30:00+01:00">
<meta name="author" content="Jane Reporter">
</head><body>
<nav><a href="/">Home</a> <a href="/sport">Sport</a></nav>
<article><h1>Council extends tram line</h1>
<p>{PARAGRAPH * 2}</p>
<p onclick="track()">Read the <a href="/docs/plan.pdf">full plan</a>.{PARAGRAPH}</p>
<script>window.evil = 1;</script>
<p>{PARAGRAPH}</p>
</article>
<footer>Copyright Example News</footer>
</body></html>"""


def _readability_page(corpus: Path, name: str) -> tuple[bytes, dict[str, object]]:
    folder = corpus / "extraction_readability_testpages" / "pages" / name
    metadata = json.loads((folder / "expected-metadata.json").read_text(encoding="utf-8"))
    return gzip.open(folder / "source.html.gz").read(), metadata


@pytest.mark.parametrize("name", ["bbc-1", "guardian-1", "nytimes-1", "ars-1"])
def test_extract_page_gets_the_title_of_real_pages(corpus: Path, name: str) -> None:
    html, expected = _readability_page(corpus, name)
    article = extract_page(html, url=f"https://pages.example/{name}", source="pages")
    assert article.title == expected["title"]
    assert len(article.text) > 1000
    assert "<script" not in article.html


def test_extract_page_reads_language_canonical_and_lead_image(corpus: Path) -> None:
    html, expected = _readability_page(corpus, "bbc-1")
    article = extract_page(html, url="https://pages.example/bbc-1", source="pages")
    assert article.language == expected["lang"] == "en"
    assert article.canonical_url == "http://www.bbc.com/news/world-us-canada-33646704"
    assert article.published is not None and article.published.date().isoformat() == "2015-07-24"
    assert article.summary.startswith("President Barack Obama has admitted")
    assert 'href="http://www.bbc.com/news/world/us_and_canada"' in article.html


def test_extract_page_metadata_and_sanitised_html() -> None:
    article = extract_page(PAGE.encode("utf-8"), url="https://news.example/x?id=1", source="news")
    assert article.title == "Council extends tram line"
    assert article.canonical_url == "https://news.example/local/tram-line-extended"
    assert article.id != ""
    assert article.url == "https://news.example/x?id=1"
    assert article.image == "https://news.example/img/tram.jpg"
    assert article.published == datetime(2024, 3, 5, 8, 30, tzinfo=UTC)
    assert article.author == "Jane Reporter"
    assert article.language == "en-gb"
    assert article.text.startswith("The city council voted on Tuesday")
    assert "Home" not in article.text and "Copyright" not in article.text
    assert 'href="https://news.example/docs/plan.pdf"' in article.html
    for forbidden in ("<script", "onclick", "window.evil", "<h1"):
        assert forbidden not in article.html


def _scrapinghub(corpus: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    folder = corpus / "extraction_scrapinghub"
    return folder, json.loads((folder / "ground-truth.json").read_text(encoding="utf-8"))


def _scrapinghub_article(corpus: Path, key: str) -> Article:
    folder, truth = _scrapinghub(corpus)
    html = gzip.decompress((folder / "html" / f"{key}.html.gz").read_bytes())
    return extract_page(html, url=truth[key]["url"], source="scrapinghub")


def test_extract_page_keeps_table_cells_apart(corpus: Path) -> None:
    article = _scrapinghub_article(
        corpus, "11ea381ad92b5448cf66eae62f52ac565361a244c8881615fc6a7bb523cc0c32"
    )
    assert "\nPos. Piloto Pontos Vitórias Poles Top 5 Top 10\n" in article.text
    assert "\n1 Kyle Busch 5040 5 1 17 27\n" in article.text
    assert "<td>Kyle Busch</td>" in article.html


def test_extract_page_leaves_out_photo_captions_and_credits(corpus: Path) -> None:
    article = _scrapinghub_article(
        corpus, "db6b0816c612296c7f1f001c6df874214fcca0da0fc86fb3aea9358c7f681754"
    )
    assert article.text.startswith("HANOI, Vietnam (AP) — U.S. Defense Secretary Mark Esper")
    assert "Photo: Hau Dinh" not in article.text
    assert article.image.startswith("https://")  # the lead image still comes from the metadata


@pytest.mark.parametrize(
    ("page", "why"),
    [
        ("t0440", "Japanese: no spaces between words"),
        ("t0511", "Chinese: no spaces between words"),
        ("t0497", "declared UTF-8 with one truncated character"),
        ("t0648", "soft hyphens inside words"),
    ],
)
def test_extract_page_keeps_every_must_keep_snippet(corpus: Path, page: str, why: str) -> None:
    folder = corpus / "extraction_trafilatura_eval"
    annotations = json.loads((folder / "annotations.json").read_text(encoding="utf-8"))
    [item] = [item for item in annotations if item["id"] == page]
    html = gzip.decompress((folder / "html" / f"{page}.html.gz").read_bytes())
    text = " ".join(extract_page(html, url=item["url"], source="eval").text.split())
    assert [s for s in item["with"] if " ".join(s.split()) not in text] == [], why


def _shingles(text: str) -> Counter[tuple[str, ...]]:
    tokens = re.findall(r"\w+", text)
    return Counter(tuple(tokens[i : i + 4]) for i in range(max(1, len(tokens) - 3)) if tokens)


def _precision_recall(gold: str, found: str) -> tuple[float, float]:
    """The scrapinghub benchmark's per-page scores over 4-gram shingles."""
    want, got = _shingles(gold), _shingles(found)
    matched = sum((want & got).values())
    return matched / max(1, sum(got.values())), matched / max(1, sum(want.values()))


def test_extract_page_f1_on_fixed_scrapinghub_pages(corpus: Path) -> None:
    # The first 15 pages by key, not a chosen subset; bench/bench_extract.py measures all 120.
    folder, truth = _scrapinghub(corpus)
    scores = []
    for key in sorted(truth)[:15]:
        html = gzip.decompress((folder / "html" / f"{key}.html.gz").read_bytes())
        try:
            text = extract_page(html, url=truth[key]["url"], source="scrapinghub").text
        except ExtractError:
            text = ""
        scores.append(_precision_recall(truth[key]["articleBody"], text))
    precision = sum(p for p, _ in scores) / len(scores)
    recall = sum(r for _, r in scores) / len(scores)
    assert 2 * precision * recall / (precision + recall) >= 0.97


def test_extract_page_without_article_text_raises() -> None:
    with pytest.raises(ExtractError, match=r"^https://news\.example/empty: no article text found$"):
        extract_page(
            '<html><body><nav><a href="/">Home</a> <a href="/sport">Sport</a></nav>'
            "<footer>(c) 2024</footer></body></html>",
            url="https://news.example/empty",
            source="news",
        )


def test_extract_document_dispatches_a_feed(corpus: Path) -> None:
    path = corpus / "feeds_realworld" / "rss-parser" / "heise.atom"
    result = extract_document(path.read_bytes(), location=str(path), source="heise")
    assert isinstance(result, tuple)
    info, articles = result
    assert info.format == "atom10" and len(articles) == 15


def test_extract_document_dispatches_plain_text(seeds: Path) -> None:
    path = seeds / "000_545cff0c2edb726a.txt"
    article = extract_document(path.read_bytes(), location=str(path), source="seeds")
    assert isinstance(article, Article)
    assert article.published == datetime(2024, 10, 15, 12, 0, tzinfo=UTC)
    assert "Wiesbaden" in article.text


def test_extract_document_uses_content_type_when_there_is_no_suffix() -> None:
    article = extract_document(
        b"Short title\n\nBody text here.", location="https://x.example/a", source="x",
        content_type="text/plain; charset=utf-8",
    )  # fmt: skip
    assert isinstance(article, Article)
    assert (article.title, article.text) == ("Short title", "Body text here.")


def test_extract_document_reads_markdown_and_html_files(tmp_path: Path) -> None:
    markdown = tmp_path / "post.md"
    markdown.write_text("# Notes on trams\n\nTrams are *quiet*.\n", encoding="utf-8")
    md_article = extract_document(markdown.read_bytes(), location=str(markdown), source="f")
    assert isinstance(md_article, Article)
    assert md_article.title == "Notes on trams"
    assert "<em>quiet</em>" in md_article.html

    page = tmp_path / "page.html"
    page.write_text(PAGE, encoding="utf-8")
    page_article = extract_document(page.read_bytes(), location=str(page), source="f")
    assert isinstance(page_article, Article)
    assert page_article.title == "Council extends tram line"


def test_decode_document_honours_a_late_charset_meta(corpus: Path) -> None:
    path = corpus / "feeds_malformed" / "miniflux" / "iso-8859-1-meta-after-1024.html"
    text = decode_document(path.read_bytes(), "text/html")
    assert "<title>Frédéric</title>" in text
    assert "Café" in text


def test_extract_document_refuses_binary_data() -> None:
    with pytest.raises(ExtractError, match=r"^/srv/blob\.bin: "):
        extract_document(b"\x00\x01\x02PK\x03\x04", location="/srv/blob.bin", source="s")


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 8


@pytest.mark.parametrize("content_type", ["text/plain", "text/html", ""])
def test_binary_served_under_a_text_type_is_refused_not_read_as_text(content_type: str) -> None:
    with pytest.raises(ExtractError, match=r"^https://x\.example/a: binary data.*bytes\)$"):
        extract_document(PNG, location="https://x.example/a", source="s", content_type=content_type)


def test_utf16_text_without_a_byte_order_mark_is_not_mistaken_for_binary() -> None:
    data = "A title\n\n" + "Plain words in a file, long enough to be an article body. " * 3
    article = extract_document(
        data.encode("utf-16-le"), location="/srv/a.txt", source="s", content_type="text/plain"
    )
    assert isinstance(article, Article) and "Plain words" in article.text


@pytest.mark.parametrize("data", [b"", b"  \r\n\t "])
def test_an_empty_document_says_so(data: bytes) -> None:
    with pytest.raises(ExtractError, match=r"^https://x\.example/e: empty document$"):
        extract_document(data, location="https://x.example/e", source="s")


def test_a_feeds_http_charset_applies_when_the_feed_declares_none() -> None:
    feed = (
        '<rss version="2.0"><channel><title>Caf\xe9</title><item><title>Cr\xe8me br\xfbl\xe9e'
        "</title><link>https://x.example/1</link></item></channel></rss>"
    ).encode("latin-1")
    info, items = extract_document(  # type: ignore[misc]
        feed, location="https://x.example/f", source="s", content_type="text/xml; charset=latin-1"
    )
    assert info.title == "Café" and items[0].title == "Crème brûlée"


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        ("héllo".encode("utf-8-sig"), "", "héllo"),
        ("héllo".encode("utf-16"), "", "héllo"),
        ("héllo".encode("latin-1"), "text/plain; charset=ISO-8859-1", "héllo"),
        ("héllo €".encode("cp1252"), "", "héllo €"),
        ("héllo".encode(), "text/html; charset=no-such-charset", "héllo"),
    ],
)
def test_decode_document(data: bytes, content_type: str, expected: str) -> None:
    assert decode_document(data, content_type) == expected


def test_decode_document_forgives_a_few_broken_bytes_in_the_declared_charset() -> None:
    # A title cut mid-character must not turn the whole page into windows-1252 mojibake.
    data = "<p>Zażółć gęślą jaźń</p>".encode() * 100 + b"<title>papieros\xc3...</title>"
    text = decode_document(data, "text/html; charset=utf-8")
    assert text.startswith("<p>Zażółć gęślą jaźń</p>")
    assert text.endswith("<title>papieros\ufffd...</title>")


def test_decode_document_never_fails_on_bad_bytes() -> None:
    assert isinstance(decode_document(bytes(range(256)) * 3), str)


def test_article_json_has_exactly_the_contract_keys() -> None:
    article = Article(
        id="abc",
        url="https://x.example/a",
        title="T",
        text="Body",
        source="s",
        published=datetime(2024, 1, 2, 3, 4, tzinfo=UTC),
        categories=("a", "b"),
    )
    as_json = article_to_json(article)
    assert set(as_json) == ARTICLE_KEYS
    assert as_json["published"] == "2024-01-02T03:04:00+00:00"
    assert as_json["categories"] == ["a", "b"]
    assert (
        article_to_json(Article(id="x", url="", title="", text="", source="s"))["published"] is None
    )
    json.dumps(as_json)


def test_feed_json_wraps_feed_and_articles() -> None:
    info = FeedInfo(title="F", link="https://x.example/", format="rss20", defect="")
    article = Article(id="abc", url="https://x.example/a", title="T", text="Body", source="s")
    as_json = feed_to_json(info, [article])
    assert as_json["feed"] == {
        "title": "F",
        "link": "https://x.example/",
        "format": "rss20",
        "defect": "",
    }
    assert [a["id"] for a in as_json["articles"]] == ["abc"]
