"""One fetched document to Article(s): sniff its kind, decode it, hand it to the right parser."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.etree
import trafilatura
from lxml.html import HtmlElement
from trafilatura.htmlprocessing import convert_to_html
from trafilatura.utils import load_html

from digest.errors import ExtractError
from digest.ingest.feeds import looks_like_feed, parse_feed
from digest.ingest.normalize import canonical_url, html_to_text, sanitize_html, shorten
from digest.ingest.plaintext import parse_markdown, parse_plain_text
from digest.models import Article, FeedInfo, article_id

SUMMARY_LIMIT = 300
LEAD_MIN_WORDS = 8
# trafilatura falls back to any text at all; a few words of navigation are not an article.
MIN_ARTICLE_WORDS = 10
CANONICAL_XPATH = "//link[@rel='canonical']/@href"
OG_URL_XPATH = "//meta[@property='og:url']/@content"
PUBLISHED_XPATH = "//meta[@property='article:published_time']/@content"
BINARY_SNIFF_BYTES = 4096
CHARSET_SNIFF_BYTES = 16_384  # charset <meta> tags sometimes sit after 1024 bytes of <head>
# A declared or UTF-8 reading may fail on a few bytes (a title cut mid-character) and still be
# right; reading the whole page as windows-1252 instead turns all of it into mojibake.
BYTES_PER_BAD_SEQUENCE = 1_000

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.I)
# Chinese and Japanese put no spaces between words: there each character counts as a word.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_TEXT_SUFFIXES = frozenset({".txt", ".text"})
_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
_HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})


def extract_document(
    data: bytes, *, location: str, source: str, content_type: str = ""
) -> tuple[FeedInfo, list[Article]] | Article:
    """A feed becomes (FeedInfo, articles); a page or text file becomes one Article."""
    if not data.strip():
        raise ExtractError(f"{location}: empty document")
    if looks_like_feed(data):
        return parse_feed(data, url=location, source=source, content_type=content_type)
    if _looks_binary(data[:BINARY_SNIFF_BYTES]):
        raise ExtractError(
            f"{location}: binary data, not a feed, web page or text file"
            f" ({content_type or 'no content type'}, {len(data)} bytes)"
        )
    suffix = PurePosixPath(urlsplit(location).path).suffix.lower()
    media_type = content_type.split(";", 1)[0].strip().lower()
    if suffix in _MARKDOWN_SUFFIXES or media_type == "text/markdown":
        return parse_markdown(decode_document(data, content_type), url=location, source=source)
    if suffix in _TEXT_SUFFIXES or media_type == "text/plain":
        return parse_plain_text(decode_document(data, content_type), url=location, source=source)
    if suffix in _HTML_SUFFIXES or "html" in media_type or _looks_like_html(data):
        return extract_page(data, url=location, source=source, content_type=content_type)
    raise ExtractError(f"{location}: not a feed, web page or text file ({media_type or suffix})")


def _looks_binary(head: bytes) -> bool:
    """NUL bytes mean binary data, unless they fall in UTF-16's rhythm (every other byte)."""
    if b"\x00" not in head or head.startswith(tuple(bom for bom, _codec in _BOMS)):
        return False
    return not _utf16_rhythm(head)


def _utf16_rhythm(head: bytes) -> str:
    """'utf-16-le' or '-be' for BOM-less UTF-16 of mostly Latin text (NUL in every other byte)."""
    even, odd = head[0::2].count(0), head[1::2].count(0)
    enough = max(1, len(head) // 8)
    if even == 0 and odd >= enough:
        return "utf-16-le"
    if odd == 0 and even >= enough:
        return "utf-16-be"
    return ""


def _looks_like_html(data: bytes) -> bool:
    head = data[:1024].lstrip(codecs.BOM_UTF8 + b" \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--", b"<p"))


def decode_document(data: bytes, content_type: str = "") -> str:
    """Text of a document: its BOM, then its declared charset, then UTF-8, then windows-1252.

    A charset that reads all but about one byte in a thousand still wins over windows-1252.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    rhythm = _utf16_rhythm(data[:BINARY_SNIFF_BYTES])
    if rhythm:
        return data.decode(rhythm, errors="replace")
    declared = [m.group(1) for m in [_CHARSET_PARAM.search(content_type)] if m]
    in_meta = [
        m.group(1).decode("ascii") for m in [_META_CHARSET.search(data[:CHARSET_SNIFF_BYTES])] if m
    ]
    candidates = [*declared, *in_meta, "utf-8"]
    for charset in candidates:
        try:
            return data.decode(_known_codec(charset))
        except (LookupError, UnicodeDecodeError):
            continue
    for charset in candidates:
        try:
            text = data.decode(_known_codec(charset), errors="replace")
        except LookupError:
            continue
        if text.count("\ufffd") <= len(data) // BYTES_PER_BAD_SEQUENCE:
            return text
    return data.decode("windows-1252", errors="replace")


def _known_codec(charset: str) -> str:
    """Browsers read 'latin-1' and 'ascii' labels as windows-1252 (WHATWG encoding spec)."""
    name = codecs.lookup(charset).name
    return "windows-1252" if name in ("latin-1", "iso8859-1", "ascii") else name


def extract_page(html: bytes | str, *, url: str, source: str, content_type: str = "") -> Article:
    """The article in a web page, with its metadata, as text and as email-safe HTML."""
    text_html = decode_document(html, content_type) if isinstance(html, bytes) else html
    tree = load_html(text_html)
    if tree is None:
        raise ExtractError(f"{url}: no article text found")
    page_meta = _page_metadata(tree, url)
    page_url = page_meta.canonical or url
    document = trafilatura.bare_extraction(
        tree,
        url=page_url,  # the base trafilatura resolves relative links against
        with_metadata=True,
        include_comments=False,
        # With images trafilatura also keeps what surrounds them: captions, photo credits,
        # gallery and print-header text (bench/bench_extract.py: F1 and leakage both worse).
        # The lead image comes from the page's metadata instead.
        include_images=False,
        include_links=True,
        include_formatting=True,
    )
    if document is None or document.body is None:
        raise ExtractError(f"{url}: no article text found")
    title = " ".join((document.title or "").split())
    article_html = sanitize_html(_article_html(document.body, title), base_url=page_url)
    text = html_to_text(article_html)
    if len(_WORD.findall(text)) < MIN_ARTICLE_WORDS:
        raise ExtractError(f"{url}: no article text found")
    canonical = canonical_url(page_url)
    return Article(
        id=article_id(canonical or url),
        url=url,
        title=title or shorten(text, 120),
        text=text,
        source=source,
        published=page_meta.published or _date_to_utc(document.date),
        canonical_url=canonical,
        summary=shorten(document.description or _lead_paragraph(text), SUMMARY_LIMIT),
        html=article_html,
        author=" ".join((document.author or "").split()),
        language=page_meta.language or (document.language or ""),
        image=urljoin(page_url, document.image) if document.image else "",
        categories=tuple(document.categories or ()),
    )


def _lead_paragraph(text: str) -> str:
    """The first paragraph that reads like prose, not a list of bylines and dates."""
    paragraphs = text.split("\n\n")
    prose = (
        p for p in paragraphs if not p.startswith("- ") and len(_WORD.findall(p)) >= LEAD_MIN_WORDS
    )
    return next(prose, paragraphs[0])


def _article_html(body: lxml.etree._Element, title: str) -> str:
    """trafilatura's body as simple HTML, headings fitted to h2-h4, without a repeated title."""
    tree = convert_to_html(body)
    headings = list(tree.iter("h1", "h2", "h3", "h4", "h5", "h6"))
    if headings and " ".join("".join(headings[0].itertext()).split()) == title:
        _remove_keeping_tail(headings[0])
    for heading in tree.iter("h1", "h5", "h6"):
        heading.tag = "h2" if heading.tag == "h1" else "h4"
    return lxml.etree.tostring(tree, encoding="unicode")


def _remove_keeping_tail(element: lxml.etree._Element) -> None:
    parent, previous = element.getparent(), element.getprevious()
    if parent is None:
        return
    if element.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


@dataclass(frozen=True, slots=True)
class _PageMetadata:
    """What trafilatura does not give us: the declared canonical, <html lang>, a timed date."""

    canonical: str
    language: str
    published: datetime | None


def _page_metadata(tree: HtmlElement, url: str) -> _PageMetadata:
    def first(xpath: str) -> str:
        values = [str(v).strip() for v in tree.xpath(xpath) if str(v).strip()]
        return values[0] if values else ""

    canonical = first(CANONICAL_XPATH) or first(OG_URL_XPATH)
    return _PageMetadata(
        canonical=urljoin(url, canonical) if canonical else "",
        language=first("/html/@lang").lower(),
        published=_iso_to_utc(first(PUBLISHED_XPATH)),
    )


def _iso_to_utc(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # "9999-12-31T23:59-01:00" is past the last moment UTC can name
        return None


def _date_to_utc(value: str | None) -> datetime | None:
    """trafilatura gives a day ('2015-07-24'); it stands for midnight UTC."""
    return _iso_to_utc(value) if value else None


def article_to_json(article: Article) -> dict[str, Any]:
    """The JSON object `digest extract` prints for one article."""
    return {
        "id": article.id,
        "title": article.title,
        "url": article.url,
        "canonical_url": article.canonical_url,
        "published": article.published.isoformat() if article.published else None,
        "author": article.author,
        "language": article.language,
        "text": article.text,
        "html": article.html,
        "image": article.image,
        "source": article.source,
        "summary": article.summary,
        "categories": list(article.categories),
        "guid": article.guid,
    }


def feed_to_json(info: FeedInfo, articles: list[Article]) -> dict[str, Any]:
    """The JSON object `digest extract` prints for a feed."""
    return {
        "feed": {
            "title": info.title,
            "link": info.link,
            "format": info.format,
            "defect": info.defect,
        },
        "articles": [article_to_json(article) for article in articles],
    }
