"""Plain, frozen data that moves through the pipeline; no I/O here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# The section for articles no topic claimed; templates show it in the reader's language.
OTHER_NEWS = "Other news"


def article_id(key: str) -> str:
    """A short stable id for an article, from its canonical URL (or GUID when it has no URL)."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Article:
    """One story, extracted and normalised. `published` is timezone-aware (UTC) or None."""

    id: str
    url: str
    title: str
    text: str
    source: str
    published: datetime | None = None
    canonical_url: str = ""
    guid: str = ""
    summary: str = ""
    html: str = ""  # sanitised with nh3; safe to put in an email
    author: str = ""
    language: str = ""
    image: str = ""
    categories: tuple[str, ...] = ()
    also_in: tuple[str, ...] = ()  # other sources that carried the same story
    origin: str = ""  # the configured source's name (`source` is what readers see)


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """What a feed says about itself."""

    title: str
    link: str
    format: str  # feedparser's version string, e.g. "rss20", "atom10", "json11"
    defect: str = ""  # why the feed is malformed, when items could still be recovered


@dataclass(frozen=True, slots=True)
class Topic:
    """An editor's topic: it claims an article by keyword, feed category or source."""

    name: str
    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # feed categories, compared caselessly
    sources: tuple[str, ...] = ()  # source names (config name or the name readers see)


@dataclass(frozen=True, slots=True)
class Section:
    label: str
    articles: tuple[Article, ...]


@dataclass(frozen=True, slots=True)
class Issue:
    """One edition of a digest: its sections in reading order."""

    digest: str
    period_key: str
    title: str
    created: datetime
    sections: tuple[Section, ...]
    intro: str = ""  # editor-written Markdown
    id: int | None = None
    number: int = 0  # 1, 2, 3, … per digest once stored; 0 before

    @property
    def article_count(self) -> int:
        return sum(len(section.articles) for section in self.sections)


@dataclass(frozen=True, slots=True)
class SharedBody:
    """One rendered variant that many messages share: html and text still holding the
    personalisation markers of `nonce` (see digest.render.markers). Backends that send one body
    with per-recipient substitutions (SendGrid), or encode a body once per variant, use it."""

    nonce: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A fully rendered, personalised email for one recipient of one issue.

    `shared` and `personal` say how `html` and `text` were made: the variant's body with
    `personal` (raw, unescaped values by field name) filled in. Absent for one-off messages.
    """

    delivery_id: str
    to: str
    sender: str
    subject: str
    html: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)
    shared: SharedBody | None = None
    personal: dict[str, str] = field(default_factory=dict)


DeliveryState = Literal["queued", "sending", "sent", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class SendResult:
    delivery_id: str
    state: DeliveryState
    provider_id: str = ""
    error: str = ""
    retry_after: float = 0.0  # seconds the provider asked us to wait (Retry-After), if any
