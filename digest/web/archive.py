"""The public archive: every issue that went out, listed newest first and as an Atom feed.

`GET /archive` lists the issues of every configured digest, `GET /archive/NAME` one digest's;
`GET /archive.atom` and `GET /archive/NAME.atom` are the same lists as Atom 1.0 (RFC 4287).
Only issues that are sending or sent appear: drafts, approved and cancelled issues never do,
so the archive and `/issues/N` agree on what is public.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from digest.config import Settings
from digest.render.filters import format_day, headline
from digest.render.i18n import html_lang
from digest.store import PublishedIssue
from digest.web.pages import Pages

PAGE_SIZE = 50
# Feed readers poll often and only want what is new; older issues are one click away.
FEED_SIZE = 20
ATOM = "http://www.w3.org/2005/Atom"
ATOM_MEDIA_TYPE = "application/atom+xml; charset=utf-8"
SECTION_SEPARATOR = " · "
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# The archive names no reader, like an issue's web version: it may be cached and indexed.
ARCHIVE_HEADERS = {
    "Cache-Control": "public, max-age=300",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; "
        "frame-ancestors 'self'; base-uri 'none'"
    ),
}
FEED_HEADERS = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
# An empty feed's <updated>: nothing in it has ever changed.
EMPTY_FEED_UPDATED = datetime(2000, 1, 1, tzinfo=UTC)

# What XML 1.0 cannot carry at all (C0 controls but tab, LF and CR; lone surrogates; U+FFFE
# and U+FFFF), and C1 controls, which it discourages: an XML parser rejects the whole feed
# for one of them, and ElementTree writes them out as they are.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_PAGE_NUMBER = re.compile(r"[1-9][0-9]{0,8}")


@dataclass(frozen=True, slots=True)
class ArchiveDigest:
    """A configured digest as the archive shows it: its dates in its own language and zone."""

    name: str
    title: str
    locale: str = "en"
    timezone: str = "UTC"


class PublishedIssues(Protocol):
    """The port the archive reads through (digest.store.Store implements it)."""

    def published_issues(
        self, digests: Sequence[str], *, offset: int = 0, limit: int = 50
    ) -> tuple[list[PublishedIssue], int]: ...


@dataclass(frozen=True, slots=True)
class Archive:
    """Everything the archive routes need; `base_url` makes the feed's absolute links."""

    publication: str
    base_url: str
    digests: tuple[ArchiveDigest, ...]
    issues: PublishedIssues


def archive_of(settings: Settings, issues: PublishedIssues) -> Archive:
    """The archive of every digest in the settings, in file order."""
    digests = tuple(
        ArchiveDigest(digest.name, digest.title, digest.locale, digest.timezone)
        for digest in settings.digests
    )
    return Archive(settings.file.name, settings.base_url, digests, issues)


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One line of the archive page."""

    issue_id: int
    number: int
    headline: str
    digest_title: str
    lang: str
    day: str  # in the digest's language and time zone
    iso_day: str
    stories: int
    sections: tuple[str, ...]


def clean_text(text: str) -> str:
    """One line fit for XML and for a page: no characters XML forbids, no direction overrides."""
    return headline(_NOT_XML.sub("", text))


def issue_headline(issue: PublishedIssue, digest: ArchiveDigest) -> str:
    """What the issue's email said in its subject: the editor's, else '<title> — <day>'."""
    subject = clean_text(issue.subject)
    if subject:
        return subject
    day = format_day(issue.created, locale=digest.locale, timezone=digest.timezone)
    return clean_text(f"{issue.title} — {day}")


# Entries are pure functions of their (frozen) issue and digest, and formatting the dates
# and cleaning the text was two thirds of a page's CPU: a busy archive formats each once.
@functools.lru_cache(maxsize=4096)
def archive_entry(issue: PublishedIssue, digest: ArchiveDigest) -> ArchiveEntry:
    local = issue.created.astimezone(ZoneInfo(digest.timezone))
    return ArchiveEntry(
        issue_id=issue.id,
        number=issue.number,
        headline=issue_headline(issue, digest),
        digest_title=clean_text(digest.title),
        lang=html_lang(digest.locale),
        day=format_day(
            issue.created, locale=digest.locale, timezone=digest.timezone, style="medium"
        ),
        iso_day=local.date().isoformat(),
        stories=issue.stories,
        sections=tuple(label for label in map(clean_text, issue.sections) if label),
    )


def parse_page(raw: str | None) -> int | None:
    """`?page=N` as a number from 1; None for anything else (the page does not exist)."""
    if raw is None:
        return 1
    return int(raw) if _PAGE_NUMBER.fullmatch(raw) else None


def page_count(total: int) -> int:
    """Pages the archive has; an empty archive still has its first (empty) page."""
    return max(1, math.ceil(total / PAGE_SIZE))


def entry_id(base_url: str, issue: PublishedIssue) -> str:
    """A tag: URI (RFC 4151) that never changes for the issue: host, the day it was built, path.

    The day is part of the scheme (who owned the name, when); the issue's own day is stable.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or "localhost"
    day = f"{issue.created.astimezone(UTC):%Y-%m-%d}"
    return f"tag:{host},{day}:{parts.path.rstrip('/')}/issues/{issue.id}"


@dataclass(frozen=True, slots=True)
class FeedHeader:
    """The feed's own fields; `updated` stands in when the feed has no entry yet."""

    title: str
    self_url: str
    archive_url: str
    author: str
    lang: str
    updated: datetime


def atom_feed(
    info: FeedHeader,
    issues: Sequence[tuple[PublishedIssue, ArchiveDigest]],
    base_url: str,
) -> bytes:
    """The Atom 1.0 document, UTF-8, built as a tree: ElementTree escapes every text and value."""
    # Atom is the default namespace, declared once on the root: ElementTree's own
    # default_namespace option refuses the unqualified attributes (rel, href) Atom uses.
    attributes = {"xmlns": ATOM, XML_LANG: info.lang}
    feed = ET.Element("feed", attributes)
    _text(feed, "id", info.self_url)
    _text(feed, "title", clean_text(info.title))
    newest = max((issue.updated for issue, _ in issues), default=info.updated)
    _text(feed, "updated", _rfc3339(newest))
    _link(feed, "self", ATOM_MEDIA_TYPE.split(";")[0], info.self_url)
    _link(feed, "alternate", "text/html", info.archive_url)
    author = ET.SubElement(feed, "author")
    _text(author, "name", clean_text(info.author))
    for issue, digest in issues:
        entry = _entry(issue, digest, base_url)
        if html_lang(digest.locale) != info.lang:
            entry.set(XML_LANG, html_lang(digest.locale))
        feed.append(entry)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _entry(issue: PublishedIssue, digest: ArchiveDigest, base_url: str) -> ET.Element:
    entry = ET.Element("entry")
    _text(entry, "id", entry_id(base_url, issue))
    _text(entry, "title", issue_headline(issue, digest))
    _text(entry, "published", _rfc3339(issue.created))
    _text(entry, "updated", _rfc3339(max(issue.updated, issue.created)))
    _link(entry, "alternate", "text/html", f"{base_url}/issues/{issue.id}")
    ET.SubElement(entry, "category", {"term": digest.name, "label": clean_text(digest.title)})
    _text(entry, "summary", feed_summary(issue))
    return entry


def feed_summary(issue: PublishedIssue) -> str:
    """'8 stories: Science · Culture & Arts' — what the issue holds, in plain text."""
    stories = f"{issue.stories} {'story' if issue.stories == 1 else 'stories'}"
    labels = SECTION_SEPARATOR.join(label for label in map(clean_text, issue.sections) if label)
    return f"{stories}: {labels}" if labels else stories


def _text(parent: ET.Element, name: str, text: str) -> None:
    ET.SubElement(parent, name).text = text


def _link(parent: ET.Element, rel: str, media_type: str, href: str) -> None:
    ET.SubElement(parent, "link", {"rel": rel, "type": media_type, "href": href})


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the routes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _View:
    """One archive (all digests, or one) and where its page sits: links are relative, so the
    pages work behind any path prefix; `here` is the page's own last path segment."""

    title: str
    digests: tuple[ArchiveDigest, ...]
    here: str  # "archive" or the digest's name
    root: str  # from the page to the site's root: "" or "../"
    feed_path: str  # from base_url


def archive_routes(archive: Archive, pages: Pages, clock: Callable[[], datetime]) -> APIRouter:
    """`/archive` and `/archive.atom`; `/archive/NAME` and `/archive/NAME.atom` per digest.

    `clock` is unused: what the pages and feeds say depends only on the stored issues.
    """
    router = APIRouter()
    by_name = {digest.name: digest for digest in archive.digests}
    everything = _View(archive.publication, archive.digests, "archive", "", "/archive.atom")

    def one_digest(name: str) -> _View | None:
        digest = by_name.get(name)
        if digest is None:
            return None
        return _View(digest.title, (digest,), name, "../", f"/archive/{name}.atom")

    def no_such_digest(name: str) -> HTMLResponse:
        back = ("../archive", "The archive")
        return pages.error(404, f"There is no digest {name!r}.", next_link=back)

    @router.get("/archive")
    def list_all(page: str | None = None) -> Response:
        return _listing(archive, pages, everything, page)

    @router.get("/archive.atom")
    def feed_all(request: Request) -> Response:
        return _feed(archive, everything, request)

    # Before /archive/{name}: a digest's name never holds a dot, so NAME.atom is always a feed.
    @router.get("/archive/{name}.atom")
    def feed_one(name: str, request: Request) -> Response:
        view = one_digest(name)
        return no_such_digest(name) if view is None else _feed(archive, view, request)

    @router.get("/archive/{name}")
    def list_one(name: str, page: str | None = None) -> Response:
        view = one_digest(name)
        return no_such_digest(name) if view is None else _listing(archive, pages, view, page)

    return router


def _listing(archive: Archive, pages: Pages, view: _View, raw_page: str | None) -> Response:
    number = parse_page(raw_page)
    first = (view.here, "The first page")
    if number is None:
        return pages.error(404, f"There is no archive page {raw_page!r}.", next_link=first)
    names = [digest.name for digest in view.digests]
    issues, total = archive.issues.published_issues(
        names, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    last = page_count(total)
    if number > last:
        return pages.error(404, f"The archive has {last} page(s), not {number}.", next_link=first)
    by_name = {digest.name: digest for digest in view.digests}
    several = len(archive.digests) > 1
    rendered = pages.render(
        "archive.html",
        title=clean_text(view.title),
        entries=[archive_entry(issue, by_name[issue.digest]) for issue in issues],
        page=number,
        pages=last,
        newer=_page_href(view.here, number - 1) if number > 1 else None,
        older=_page_href(view.here, number + 1) if number < last else None,
        root=view.root,
        feed_href=view.feed_path.rsplit("/", 1)[1],
        show_digest=several and len(view.digests) > 1,
        # Every digest's own archive, and the whole one, once there is more than one digest.
        others=_other_archives(archive, view) if several else [],
    )
    return HTMLResponse(rendered.body, headers=ARCHIVE_HEADERS)


def _page_href(here: str, number: int) -> str:
    return here if number == 1 else f"{here}?page={number}"


def _other_archives(archive: Archive, view: _View) -> list[tuple[str, str, bool]]:
    """(href, title, is this page) for the whole archive and each digest's, from this page."""
    whole = not view.root
    prefix = "archive/" if whole else ""
    links = [(f"{view.root}archive", "All digests", whole)]
    for digest in archive.digests:
        current = not whole and view.here == digest.name
        links.append((prefix + digest.name, clean_text(digest.title), current))
    return links


def _feed(archive: Archive, view: _View, request: Request) -> Response:
    names = [digest.name for digest in view.digests]
    issues, _ = archive.issues.published_issues(names, offset=0, limit=FEED_SIZE)
    by_name = {digest.name: digest for digest in view.digests}
    info = FeedHeader(
        title=view.title,
        self_url=archive.base_url + view.feed_path,
        archive_url=archive.base_url + view.feed_path.removesuffix(".atom"),
        author=archive.publication,
        # The first digest's language; an entry of a digest in another one says so itself.
        lang=html_lang(view.digests[0].locale) if view.digests else "en",
        # Fixed, not the clock: an empty feed keeps one body, so its ETag answers polls with 304.
        updated=EMPTY_FEED_UPDATED,
    )
    body = atom_feed(info, [(issue, by_name[issue.digest]) for issue in issues], archive.base_url)
    # Feed readers poll; one that sends back the ETag of what it has gets a bodiless 304.
    headers = {**FEED_HEADERS, "ETag": body_etag(body)}
    if etag_matches(request.headers.get("if-none-match", ""), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=ATOM_MEDIA_TYPE, headers=headers)


def body_etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names `etag`; weakly, as RFC 9110 asks for GET (a
    compressing proxy turns "x" into W/"x")."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags
