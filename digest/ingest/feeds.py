"""Feeds to articles: RSS, Atom and RDF through feedparser, JSON Feed through json."""

from __future__ import annotations

import html as html_lib
import io
import json
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
import lxml.etree
import lxml.html

from digest.errors import SourceError
from digest.ingest.feedbytes import WINDOWS_1252_FALLBACK, repair_xml, sniff_text
from digest.ingest.normalize import (
    canonical_url,
    clean_text,
    html_to_text,
    sanitize_html,
    shorten,
)
from digest.models import Article, FeedInfo, article_id

SUMMARY_LIMIT = 300
TITLE_LIMIT = 120  # for items without a title, a title is cut from their text
SNIFF_BYTES = 4096
# nh3's time grows with the square of the nesting depth; HTML with more tags than this is
# re-parsed by libxml2 first, which stops nesting at 256 levels.
NESTED_MARKUP_TAGS = 500

FEED_ROOTS = frozenset({"rss", "feed", "rdf", "channel"})
_XML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_XML_DOCTYPE = re.compile(r"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", re.S | re.I)
_XML_ROOT = re.compile(r"<(?:[A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")
# Some feeds escape the slashes: "https:\/\/jsonfeed.org\/version\/1".
_JSON_FEED_VERSION = re.compile(r'"version"\s*:\s*"https?:(?:\\?/){2}jsonfeed\.org(?:\\?/)version')
_JSON_FEED_VERSION_NUMBER = re.compile(r"jsonfeed\.org/version/(\d+)(?:\.(\d+))?")
_JSON_FEED_KEYS = ('"feed_url"', '"home_page_url"')
_URL_BREAKS = re.compile(r"[\t\r\n]")
_WEB_URL = re.compile(r"https?://", re.I)
_HTML_TYPES = ("text/html", "application/xhtml+xml", "html", "xhtml")
_TAG = re.compile(r"<(?:/?[A-Za-z][\w:.-]*(?:\s[^<>]*)?/?|!--.*?--)>", re.S)
# Markup in a plain-text title that could run or load something: an element of that kind, or
# any tag with attributes. "<i> and <b> explained" is left as written.
_ACTIVE_MARKUP = re.compile(
    r"<\s*/?\s*(?:script|style|iframe|frame|object|embed|svg|math|template|noscript|form|img|"
    r"link|meta|base|video|audio|source)\b|<[A-Za-z][\w:.-]*\s[^<>]*=",
    re.I,
)


def looks_like_feed(data: bytes) -> bool:
    """True for RSS/Atom/RDF XML or a JSON Feed, even after a BOM or stray whitespace."""
    head = sniff_text(data[:SNIFF_BYTES]).lstrip()
    if head.startswith("{"):
        return bool(_JSON_FEED_VERSION.search(head)) or (
            '"items"' in head and any(key in head for key in _JSON_FEED_KEYS)
        )
    if not head.startswith("<"):
        return False
    body = _XML_DOCTYPE.sub("", _XML_COMMENT.sub("", head))
    root = _XML_ROOT.search(body)
    return root is not None and root.group(1).lower() in FEED_ROOTS


def parse_feed(
    data: bytes, *, url: str, source: str, content_type: str = ""
) -> tuple[FeedInfo, list[Article]]:
    """Every recoverable item of a feed as an Article; SourceError when nothing is.

    `content_type` is the HTTP header: its charset applies when the document declares none.
    """
    if not data.strip():
        raise SourceError(f"{source}: empty document, not a feed")
    if sniff_text(data[:SNIFF_BYTES]).lstrip().startswith("{"):
        return _parse_json_feed(data, url=url, source=source)
    return _parse_xml_feed(data, url=url, source=source, content_type=content_type)


# --- RSS, Atom, RDF ----------------------------------------------------------------------------


def _parse_xml_feed(
    data: bytes, *, url: str, source: str, content_type: str
) -> tuple[FeedInfo, list[Article]]:
    repaired, repairs = repair_xml(data, content_type)
    # No charset: repair_xml made the document UTF-8 (or left a BOM or declaration to decide).
    headers = {"content-type": "application/xml"}
    if url.startswith(("http://", "https://")):
        headers["content-location"] = url  # the base for relative links
    # A BytesIO, never bare bytes or str: feedparser treats a string as a path or URL to open.
    # It strips DOCTYPEs (keeping only literal entities, which repair_xml bounds), so neither
    # external nor nested "billion laughs" entities are ever expanded.
    # nh3 sanitises later, resolving relative links against the feed's URL; feedparser's own
    # resolving re-parses every body (a third of its time) and is needed only for xml:base.
    parsed = feedparser.parse(
        io.BytesIO(repaired),
        response_headers=headers,
        sanitize_html=False,
        resolve_relative_uris=b"xml:base" in repaired,
    )
    bozo = [_one_line(parsed.get("bozo_exception"))] if parsed.get("bozo") else []
    defect = "; ".join([*repairs, *bozo])
    feed = parsed.get("feed", {})
    language = str(feed.get("language") or "")
    articles = [
        article
        for entry in parsed.get("entries", [])
        if (article := _article_from_entry(entry, url=url, source=source, language=language))
    ]
    if not articles:
        if not parsed.get("version") and not looks_like_feed(repaired):
            raise SourceError(f"{source}: not a feed (no RSS, Atom, RDF or JSON Feed root)")
        if parsed.get("bozo"):
            raise SourceError(f"{source}: malformed feed with no recoverable items ({defect})")
    info = FeedInfo(
        title=_plain_title(feed.get("title", ""), feed.get("title_detail")),
        link=_web_link(str(feed.get("link") or ""), url) or url,
        format=str(parsed.get("version") or "unknown"),
        defect=defect,
    )
    return info, articles


def _article_from_entry(
    entry: Mapping[str, Any], *, url: str, source: str, language: str
) -> Article | None:
    content = _entry_content(entry)
    summary = entry.get("summary_detail") or {}
    return _build_article(
        source=source,
        base_url=url,
        # Where feedparser would have resolved them: against the feed's own URL.
        content_base=url if _WEB_URL.match(url) else "",
        link=str(entry.get("link") or ""),
        guid=str(entry.get("id") or ""),
        title=_plain_title(entry.get("title", ""), entry.get("title_detail")),
        content_html=content,
        summary_html=_as_html(summary.get("value", ""), summary.get("type", "")),
        published=_struct_time_to_utc(
            # dict.get: feedparser's own .get maps updated_parsed to published_parsed with a
            # DeprecationWarning; we want exactly the fields the entry has.
            dict.get(entry, "published_parsed")
            or dict.get(entry, "updated_parsed")
            or dict.get(entry, "created_parsed")
        ),
        author=str(entry.get("author") or ""),
        categories=[str(tag.get("term") or "") for tag in entry.get("tags", [])],
        image=next(_entry_images(entry), ""),
        language=language,
    )


def _entry_content(entry: Mapping[str, Any]) -> str:
    """The fullest body the entry has: content:encoded / atom:content before the summary."""
    contents = entry.get("content") or []
    html_first = sorted(contents, key=lambda c: str(c.get("type", "")) not in _HTML_TYPES)
    for content in html_first:
        if str(content.get("value", "")).strip():
            return _as_html(content["value"], content.get("type", ""))
    summary = entry.get("summary_detail") or {}
    return _as_html(summary.get("value", ""), summary.get("type", ""))


def _as_html(value: str, content_type: str) -> str:
    if not value:
        return ""
    if content_type and content_type not in _HTML_TYPES:
        return "".join(f"<p>{html_lib.escape(p)}</p>" for p in clean_text(value).split("\n\n"))
    return value


def _entry_images(entry: Mapping[str, Any]) -> Iterator[str]:
    for thumbnail in entry.get("media_thumbnail") or []:
        yield str(thumbnail.get("url") or "")
    for media in entry.get("media_content") or []:
        if media.get("medium") == "image" or str(media.get("type", "")).startswith("image/"):
            yield str(media.get("url") or "")
    for enclosure in entry.get("enclosures") or []:
        if str(enclosure.get("type", "")).startswith("image/"):
            yield str(enclosure.get("href") or "")
    image = entry.get("image")
    if isinstance(image, Mapping):
        yield str(image.get("href") or "")


def _plain_title(title: object, detail: Mapping[str, Any] | None = None) -> str:
    """A title on one line; HTML titles, and text titles with active markup, read as HTML."""
    text = str(title or "")
    if (detail and detail.get("type") in _HTML_TYPES) or _ACTIVE_MARKUP.search(text):
        text = html_to_text(text)
    return " ".join(text.split())


def _web_link(value: str, base_url: str) -> str:
    """An absolute http(s) URL, or "" for links a reader should not follow (javascript:, data:)."""
    # Browsers drop tabs and line breaks inside URLs: "java\tscript:" is javascript:.
    value = _URL_BREAKS.sub("", value).strip()
    if value and not _WEB_URL.match(value) and _WEB_URL.match(base_url):
        try:
            value = urljoin(base_url, value)
        except ValueError:  # a malformed host such as "//[::1"
            return ""
    return value if _WEB_URL.match(value) else ""


def _bounded_html(html: str) -> str:
    """HTML whose nesting cannot make sanitising slow: libxml2 re-parses long fragments."""
    if html.count("<") <= NESTED_MARKUP_TAGS:
        return html
    text = html_lib.unescape(_TAG.sub(" ", html))
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return _as_html(text, "text/plain")
    # libxml2 drops everything nested deeper than 256 levels: then the words alone are kept.
    if _visible_length(root.text_content()) < _visible_length(text):
        return _as_html(text, "text/plain")
    return lxml.html.tostring(root, encoding="unicode")


def _visible_length(text: str) -> int:
    return len(text) - sum(map(text.count, " \t\r\n\f\xa0"))


def _struct_time_to_utc(value: time.struct_time | None) -> datetime | None:
    """feedparser normalises every date it understands to a UTC struct_time."""
    if not value:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _one_line(exception: object) -> str:
    text = " ".join(str(exception).split()) or type(exception).__name__
    return shorten(f"{type(exception).__name__}: {text}", 200)


# --- JSON Feed 1.0 / 1.1 (feedparser 6.0 does not read it) -------------------------------------


def _parse_json_feed(data: bytes, *, url: str, source: str) -> tuple[FeedInfo, list[Article]]:
    text = data.decode("utf-8-sig", errors=WINDOWS_1252_FALLBACK)
    defect = ""
    try:
        # strict=False lets raw control characters inside strings through, as real feeds have.
        document = json.loads(text, strict=False)
    except json.JSONDecodeError as error:
        defect = f"invalid JSON: {error}"
        document = _recover_json_feed(text)
    except RecursionError:
        defect = "invalid JSON: nested too deeply"
        document = _recover_json_feed(text)
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise SourceError(f"{source}: not a JSON Feed (no top-level items list)")
    language = str(document.get("language") or "")
    feed_author = _json_author(document)
    articles = [
        article
        for item in document["items"]
        if isinstance(item, dict)
        and (article := _article_from_json_item(item, url, source, language, feed_author))
    ]
    if not articles and defect:
        raise SourceError(f"{source}: malformed feed with no recoverable items ({defect})")
    info = FeedInfo(
        title=_plain_title(document.get("title")),
        link=_web_link(str(document.get("home_page_url") or ""), url) or url,
        format=_json_feed_format(document.get("version")),
        defect=shorten(defect, 200),
    )
    return info, articles


def _json_feed_format(version: object) -> str:
    """feedparser-style version names: 'json10', 'json11', or 'json' when unstated."""
    found = _JSON_FEED_VERSION_NUMBER.search(str(version or ""))
    return f"json{found.group(1)}{found.group(2) or 0}" if found else "json"


def _recover_json_feed(text: str) -> dict[str, Any]:
    """What a truncated JSON Feed still holds: its leading string fields and complete items."""
    document: dict[str, Any] = {}
    start = text.find('"items"')
    head = text if start < 0 else text[:start]
    for key in ("version", "title", "home_page_url", "language"):
        found = re.search(rf'"{key}"\s*:\s*("(?:[^"\\]|\\.)*")', head)
        if found:
            document[key] = json.loads(found.group(1), strict=False)
    if start < 0:
        return document
    items: list[Any] = []
    decoder = json.JSONDecoder(strict=False)
    position = text.find("[", start) + 1
    while 0 < position < len(text):
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        try:
            item, position = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, RecursionError):
            break
        items.append(item)
    document["items"] = items
    return document


def _article_from_json_item(
    item: Mapping[str, Any], base_url: str, source: str, language: str, feed_author: str
) -> Article | None:
    content_html = str(item.get("content_html") or "")
    if not content_html and item.get("content_text"):
        content_html = _as_html(str(item["content_text"]), "text/plain")
    summary = str(item.get("summary") or "")
    attachments = item.get("attachments") if isinstance(item.get("attachments"), list) else []
    images = [
        str(item.get("image") or ""),
        str(item.get("banner_image") or ""),
        *(
            str(a.get("url") or "")
            for a in attachments
            if isinstance(a, dict) and str(a.get("mime_type", "")).startswith("image/")
        ),
    ]
    tags = item.get("tags") if isinstance(item.get("tags"), list) else []
    return _build_article(
        source=source,
        base_url=base_url,
        link=str(item.get("url") or item.get("external_url") or ""),
        guid=str(item.get("id") or ""),
        title=_plain_title(item.get("title")),
        content_html=content_html or _as_html(summary, "text/plain"),
        summary_html=_as_html(summary, "text/plain"),
        published=_parse_rfc3339(item.get("date_published") or item.get("date_modified")),
        author=_json_author(item) or feed_author,
        categories=[str(tag) for tag in tags],
        image=next((image for image in images if image), ""),
        language=str(item.get("language") or language),
    )


def _json_author(node: Mapping[str, Any]) -> str:
    authors = node.get("authors") if isinstance(node.get("authors"), list) else []
    for author in [*authors, node.get("author")]:
        if isinstance(author, dict) and author.get("name"):
            return str(author["name"])
    return ""


def _parse_rfc3339(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # "9999-12-31T23:59-01:00" is past the last moment UTC can name
        return None


# --- shared -------------------------------------------------------------------------------------


def _build_article(
    *,
    source: str,
    base_url: str,
    link: str,
    guid: str,
    title: str,
    content_html: str,
    summary_html: str,
    published: datetime | None,
    author: str,
    categories: list[str],
    image: str,
    language: str,
    content_base: str = "",
) -> Article | None:
    """One Article from an item's parts, or None when the item carries nothing to show.

    Relative links in the content resolve against `content_base`, else the item's own link.
    """
    link = _web_link(link, base_url)
    canonical = canonical_url(link) if link else ""
    html = sanitize_html(_bounded_html(content_html), base_url=content_base or link or base_url)
    text = html_to_text(html)
    summary = shorten(html_to_text(summary_html) or text, SUMMARY_LIMIT)
    title = title or shorten(text, TITLE_LIMIT) or link
    if not title:  # nothing a reader could be shown
        return None
    return Article(
        id=article_id(canonical or guid or f"{base_url}\n{title}"),
        url=link,
        title=title,
        text=text,
        source=source,
        published=published,
        canonical_url=canonical,
        guid=guid,
        summary=summary,
        html=html,
        author=" ".join(author.split()),
        language=language,
        image=_web_link(image, link or base_url),
        categories=tuple(dict.fromkeys(" ".join(c.split()) for c in categories if c.strip())),
    )
