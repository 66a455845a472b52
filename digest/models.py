"""Plain, frozen data that moves through the pipeline; no I/O here."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from digest.render.markers import PersonalTemplate

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
    subject: str = ""  # the editor's subject line; empty: the template's own
    pinned: tuple[str, ...] = ()  # ids of articles the editor pinned first in their section

    @property
    def article_count(self) -> int:
        return sum(len(section.articles) for section in self.sections)


@dataclass(frozen=True, slots=True)
class SharedBody:
    """One rendered variant that many messages share: html and text still holding the
    personalisation markers of `nonce` (see digest.render.markers). Backends that send one body
    with per-recipient substitutions (SendGrid), or encode a body once per variant, use it.

    Make one per variant, not per message: it splits both parts at their markers once.
    """

    nonce: str
    html: str
    text: str
    html_template: PersonalTemplate = field(init=False, repr=False, compare=False)
    text_template: PersonalTemplate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from digest.render.markers import split_markers  # digest.render imports this module

        object.__setattr__(self, "html_template", split_markers(self.html, self.nonce))
        object.__setattr__(self, "text_template", split_markers(self.text, self.nonce))

    def personalise(self, personal: Mapping[str, str]) -> tuple[str, str]:
        """(html, text) for one reader: values HTML-escaped in the html part, raw in the text."""
        from digest.render.markers import escape_html, keep_text

        return (
            self.html_template.fill(personal, escape_html),
            self.text_template.fill(personal, keep_text),
        )


@dataclass(frozen=True, slots=True, init=False)
class OutgoingMessage:
    """A rendered, personalised email for one recipient of one issue.

    Either `html` and `text` are given (a one-off message), or `shared` and `personal` are:
    the variant's body and this reader's raw values by field name. Then the personalised
    `html` and `text` are made only when a backend asks for them; SendGrid never does, it
    sends the shared body with substitutions.
    """

    delivery_id: str
    to: str
    sender: str
    subject: str
    headers: dict[str, str]
    shared: SharedBody | None
    personal: dict[str, str]
    _body: tuple[str, str] | None = field(repr=False, compare=False)

    def __init__(
        self,
        delivery_id: str,
        to: str,
        sender: str,
        subject: str,
        html: str | None = None,
        text: str | None = None,
        headers: dict[str, str] | None = None,
        shared: SharedBody | None = None,
        personal: dict[str, str] | None = None,
        _body: tuple[str, str] | None = None,  # dataclasses.replace passes it on
    ) -> None:
        if html is not None and text is not None:
            body: tuple[str, str] | None = (html, text)
        elif shared is not None:
            body = None  # made from shared and personal when asked (never stale after replace)
        elif _body is not None:
            body = _body
        else:
            raise ValueError(f"message {delivery_id}: give html and text, or a shared body")
        for name, value in (
            ("delivery_id", delivery_id),
            ("to", to),
            ("sender", sender),
            ("subject", subject),
            ("headers", {} if headers is None else headers),
            ("shared", shared),
            ("personal", {} if personal is None else personal),
            ("_body", body),
        ):
            object.__setattr__(self, name, value)

    @property
    def html(self) -> str:
        return self._personalised()[0]

    @property
    def text(self) -> str:
        return self._personalised()[1]

    def _personalised(self) -> tuple[str, str]:
        if self._body is None:
            assert self.shared is not None
            object.__setattr__(self, "_body", self.shared.personalise(self.personal))
        assert self._body is not None
        return self._body


DeliveryState = Literal["queued", "sending", "sent", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class SendResult:
    delivery_id: str
    state: DeliveryState
    provider_id: str = ""
    error: str = ""
    retry_after: float = 0.0  # seconds the provider asked us to wait (Retry-After), if any
