"""Template filters: how dates, links and article text are shortened for a reader."""

from __future__ import annotations

import re
import textwrap
import unicodedata
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.lists import format_list
from babel.numbers import format_decimal
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from digest.render.markdown import markdown_html, markdown_text

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_BLANK_LINE = re.compile(r"\n\s*\n")
_ASCII_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")
_TRAILING_PUNCTUATION = ",;:—–-"
# Embeddings, overrides and isolates (LRE…RLO, LRI…PDI): a title carrying them can reverse the
# text around it (an RLO makes "exe.doc" read "cod.exe"). LRM and RLM stay: RTL text needs them.
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
# Other invisible format characters that only serve to disguise text.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad"))
# C0 and C1 controls and DEL become spaces: in a subject they would reach the Subject header
# (a CR or LF would start a new one), and in MJML they stop the XML parser.
_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], " ")
HEADLINE_MAX_CHARACTERS = 200
# Reading speed: about 230 words a minute in alphabetic scripts, 500 characters in CJK.
WORDS_PER_MINUTE = 230
CJK_CHARACTERS_PER_MINUTE = 500
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# Text that breaks between characters: CJK ideographs and kana, their punctuation and
# full-width forms. (Korean breaks at spaces, like English, so Hangul is not in this set.)
_WIDE = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_WIDE_TEXT = re.compile(f"[{_WIDE}]")
_WRAP_TOKENS = re.compile(f"[{_WIDE}]| |[^ {_WIDE}]+")
_NO_LINE_START = frozenset(
    "、。，．・：；？！」』）〕】〉》ー々ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ,.:;?!)]}"
)


def format_day(value: date | datetime, *, locale: str, timezone: str, style: str = "long") -> str:
    """A calendar day in the reader's language; aware datetimes are first moved to `timezone`.

    `locale` may be a BCP 47 tag as in <html lang> ("pt-BR") or Babel's form ("pt_BR").
    """
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(ZoneInfo(timezone))
        value = value.date()
    return format_date(value, format=style, locale=locale.replace("-", "_"))


@pass_context
def date_filter(context: Context, value: date | datetime | None, style: str = "long") -> str:
    """`{{ article.published | date("medium") }}`, using the template's `locale` and `timezone`."""
    if value is None:
        return ""
    return format_day(
        value,
        locale=context.get("locale", "en"),
        timezone=context.get("timezone", "UTC"),
        style=style,
    )


def domain(url: str) -> str:
    """The host a link points to, without www.: 'https://www.bbc.co.uk/x' → 'bbc.co.uk'."""
    host = urlsplit(url).hostname or ""
    return host.removeprefix("www.")


def http_url(url: str) -> str:
    """The URL when it is http(s), else '' — a feed may carry javascript: or data: links."""
    return url if urlsplit(url.strip()).scheme.lower() in {"http", "https"} else ""


def truncate_words(text: str, count: int = 40, end: str = "…") -> str:
    """At most `count` words, whitespace collapsed; `end` marks a cut."""
    words = text.split()
    if len(words) <= count:
        return " ".join(words)
    return " ".join(words[:count]).rstrip(_TRAILING_PUNCTUATION) + end


def truncate_characters(text: str, count: int = 200, end: str = "…") -> str:
    """At most `count` characters including `end`, whitespace collapsed, cut after a whole word.

    A single word longer than that (a URL, say) is cut inside the word.
    """
    text = " ".join(text.split())
    if len(text) <= count:
        return text
    room = count - len(end)
    head = text[: room + 1]
    kept = head.rsplit(" ", 1)[0] if " " in head else head[:room]
    return kept.rstrip(_TRAILING_PUNCTUATION + " ") + end


def lead(text: str, sentences: int = 2, characters: int = 200) -> str:
    """The opening sentences of `text` (up to `sentences`, within `characters`), for a card summary.

    Whole sentences are kept while they fit; a first sentence that does not fit is cut after a
    word and ends with "…".
    """
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(" ".join(text.split())):
        if len(kept) == sentences or (kept and len(" ".join([*kept, sentence])) > characters):
            break
        kept.append(sentence)
    return truncate_characters(" ".join(kept), characters)


def headline(text: str, count: int = HEADLINE_MAX_CHARACTERS) -> str:
    """A title fit for a card or a subject: one line, no direction overrides, at most `count`.

    Markup (a macro's or gettext's output) is unescaped first, so autoescape escapes it once.
    """
    if isinstance(text, Markup):
        text = text.unescape()
    return truncate_characters(one_line(text), count)


def one_line(text: str) -> str:
    """The text as one line of visible characters: controls and whitespace runs become one
    space; direction overrides and invisible format characters go."""
    cleaned = str(text).translate(_BIDI_CONTROLS).translate(_INVISIBLE).translate(_CONTROLS)
    return " ".join(cleaned.split())


def reading_minutes(text: str) -> int:
    """Whole minutes to read `text` (at least 1), counting CJK by character."""
    cjk = len(_CJK.findall(text))
    words = len(_CJK.sub(" ", text).split())
    return max(1, round(words / WORDS_PER_MINUTE + cjk / CJK_CHARACTERS_PER_MINUTE))


@pass_context
def list_filter(context: Context, items: Iterable[str]) -> str:
    """`{{ names | list }}`: "A, B and C" the reader's way (、 in Japanese, و in Arabic)."""
    return format_list(list(items), locale=context.get("locale", "en").replace("-", "_"))


@pass_context
def number_filter(context: Context, value: int | float) -> str:
    """`{{ count | number }}`: digits grouped the reader's way (1,234 / 1.234 / ١٬٢٣٤)."""
    return format_decimal(value, locale=context.get("locale", "en").replace("-", "_"))


def markdown_filter(source: str, **styles: str) -> Markup:
    """`{{ issue.intro | markdown(p="margin:0") }}`: sanitised HTML, each tag styled inline."""
    return Markup(markdown_html(source, styles=styles))


def paragraphs(text: str) -> list[str]:
    """Paragraphs separated by blank lines, each with its whitespace collapsed."""
    return [" ".join(block.split()) for block in _BLANK_LINE.split(text) if block.strip()]


def wrap(text: str, width: int = 78, indent: str = "", first: str | None = None) -> str:
    """Plain text filled to `width` columns; long URLs stay whole rather than being broken.

    No-break spaces stay (French puts one before ":"), so a line never starts with the ":".
    Chinese, Japanese and Korean break between characters, which count two columns each.
    """
    text = _ASCII_WHITESPACE.sub(" ", text).strip()
    first_indent = indent if first is None else first
    if not _WIDE_TEXT.search(text):
        return textwrap.fill(
            text,
            width=width,
            initial_indent=first_indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    return _wrap_wide(text, width, first_indent, indent)


def _wrap_wide(text: str, width: int, first_indent: str, indent: str) -> str:
    """Greedy fill where each CJK character is a place to break; a line never starts with
    closing punctuation (。、」 …), which stays on the line before."""
    lines: list[str] = []
    line, used = first_indent, _columns(first_indent)
    for token in _WRAP_TOKENS.findall(text):
        size = _columns(token)
        at_start = line.strip() == ""
        if token == " ":
            if not at_start:
                line, used = line + token, used + size
            continue
        if used + size > width and not at_start and token not in _NO_LINE_START:
            lines.append(line.rstrip())
            line, used = indent, _columns(indent)
        line, used = line + token, used + size
    lines.append(line.rstrip())
    return "\n".join(lines)


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


FILTERS: dict[str, Any] = {
    "date": date_filter,
    "domain": domain,
    "headline": headline,
    "http_url": http_url,
    "lead": lead,
    "list": list_filter,
    "markdown": markdown_filter,
    "markdown_text": markdown_text,
    "number": number_filter,
    "reading_minutes": reading_minutes,
    "paragraphs": paragraphs,
    "truncate_characters": truncate_characters,
    "truncate_words": truncate_words,
    "wrap": wrap,
}
