"""Articles saved as plain text or Markdown: find the title, date and body, drop the clutter."""

from __future__ import annotations

import html as html_lib
import re
import unicodedata
from datetime import UTC, datetime

from markdown_it import MarkdownIt

from digest.errors import ExtractError
from digest.ingest.normalize import canonical_url, clean_text, html_to_text, sanitize_html, shorten
from digest.models import Article, article_id

SUMMARY_LIMIT = 300
DATE_LINE_MAX = 40  # a date line is short; a longer line that parses as one is prose
HEADER_BLOCKS = 3  # the date line, if any, comes within the first blocks after the title

_DATE_FORMATS = (
    "%b %d, %Y",
    "%B %d, %Y",
    "%d %b %Y",
    "%d %B %Y",
    "%Y-%m-%d",
    "%d.%m.%Y",
    "%Y/%m/%d",
)
_DATE_AND_TIME = re.compile(
    r"^(?P<date>.+?)(?:\s*(?:[-–—,|]|at)?\s*(?P<time>\d{1,2}:\d{2})(?::\d{2})?)?\s*(?:UTC|GMT)?$",
    re.I,
)
# Lines that end the article: what follows them is navigation or an appeal, not the story.
_END_MARKER = re.compile(
    r"^(related( articles| stories| posts| news)?|read (more|also)|see also|more on this( story)?"
    r"|support us|share this( article| story)?)\s*:?$",
    re.I,
)
_APPEAL = re.compile(
    r"become a (patron|member|supporter)|\bdonat(e|ion)"
    r"|support (us|our (work|journalism|reporting))|subscribe (now|today)",
    re.I,
)
_SENTENCE_END = re.compile(r"[.!?:;…\"”’)]$")
_MARKDOWN = MarkdownIt("commonmark", {"html": False})  # raw HTML in Markdown is not trusted


def parse_plain_text(text: str, *, url: str, source: str) -> Article:
    """A plain-text article: title line, optional standfirst and date line, then the body."""
    blocks = _blocks(text)
    if not blocks:
        raise ExtractError(f"{url}: empty document")
    title, blocks = blocks[0][0], _without_first_line(blocks)
    standfirst, published, blocks = _split_dateline(blocks)
    if published:
        blocks = _drop_seo_header(blocks, title)
    body = _drop_trailing_appeal(_cut_at_end_marker(blocks))
    paragraphs = [" ".join(block) for block in body]
    return _article(
        url=url,
        source=source,
        title=title,
        paragraphs_text="\n\n".join(paragraphs),
        html="".join(f"<p>{html_lib.escape(p)}</p>" for p in paragraphs),
        summary=standfirst,
        published=published,
    )


def parse_markdown(text: str, *, url: str, source: str) -> Article:
    """A Markdown article: the first line (a '# Title' heading or plain) is the title."""
    lines = clean_text(text).split("\n")
    if not lines[0]:
        raise ExtractError(f"{url}: empty document")
    title = html_to_text(_MARKDOWN.renderInline(lines[0].lstrip("#").strip() or lines[0]))
    html = sanitize_html(_MARKDOWN.render("\n".join(lines[1:])), base_url=url)
    return _article(
        url=url,
        source=source,
        title=title,
        paragraphs_text=html_to_text(html),
        html=html,
        summary="",
        published=None,
    )


def _article(
    *,
    url: str,
    source: str,
    title: str,
    paragraphs_text: str,
    html: str,
    summary: str,
    published: datetime | None,
) -> Article:
    canonical = canonical_url(url) if url.startswith(("http://", "https://")) else ""
    text = clean_text(paragraphs_text)
    first_paragraph = text.split("\n\n", 1)[0]
    return Article(
        id=article_id(canonical or url),
        url=url,
        title=title,
        text=text,
        source=source,
        published=published,
        canonical_url=canonical,
        summary=shorten(summary or first_paragraph, SUMMARY_LIMIT),
        html=html,
    )


def _blocks(text: str) -> list[list[str]]:
    """Paragraphs (runs of non-blank lines), each a list of its cleaned lines."""
    return [block.split("\n") for block in clean_text(text).split("\n\n") if block]


def _split_dateline(blocks: list[list[str]]) -> tuple[str, datetime | None, list[list[str]]]:
    """(standfirst, published, the rest) when a date line follows the title closely."""
    for index, block in enumerate(blocks[:HEADER_BLOCKS]):
        published = parse_date_line(block[0])
        if published:
            standfirst = " ".join(" ".join(b) for b in blocks[:index])
            return standfirst, published, _without_first_line(blocks[index:])
    return "", None, blocks


def _without_first_line(blocks: list[list[str]]) -> list[list[str]]:
    return ([blocks[0][1:]] if blocks[0][1:] else []) + blocks[1:]


def parse_date_line(line: str) -> datetime | None:
    """The moment a short line like 'Oct 15, 2024 - 12:00' names (UTC), or None."""
    line = line.strip()
    match = _DATE_AND_TIME.match(line)
    if len(line) > DATE_LINE_MAX or not match:
        return None
    day = _parse_day(match.group("date").strip().rstrip(",-–— "))
    if day is None:
        return None
    if match.group("time"):
        hours, minutes = (int(part) for part in match.group("time").split(":"))
        if hours > 23 or minutes > 59:
            return None
        day = day.replace(hour=hours, minute=minutes)
    return day.replace(tzinfo=UTC)


def _parse_day(text: str) -> datetime | None:
    for date_format in _DATE_FORMATS:
        try:
            return datetime.strptime(text, date_format)
        except ValueError:
            continue
    return None


def _drop_seo_header(blocks: list[list[str]], title: str) -> list[list[str]]:
    """Below a date line, drop a repeat of the title and an all-lowercase keyword line."""
    if blocks and _same_words(" ".join(blocks[0]), title):
        blocks = blocks[1:]
    if blocks and len(blocks) > 1 and _is_keyword_line(blocks[0]):
        blocks = blocks[1:]
    return blocks


def _same_words(a: str, b: str) -> bool:
    return _folded(a) == _folded(b)


def _folded(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _is_keyword_line(block: list[str]) -> bool:
    """A CMS's SEO keyword line: one lowercase line of words with no sentence punctuation."""
    line = block[0]
    return (
        len(block) == 1
        and len(line.split()) >= 4
        and line == line.lower()
        and any(c.isalpha() for c in line)
        and not _SENTENCE_END.search(line)
    )


def _cut_at_end_marker(blocks: list[list[str]]) -> list[list[str]]:
    for index, block in enumerate(blocks):
        if index > 0 and len(block) == 1 and _END_MARKER.match(block[0]):
            return blocks[:index]
    return blocks


def _drop_trailing_appeal(blocks: list[list[str]]) -> list[list[str]]:
    while len(blocks) > 1 and _APPEAL.search(" ".join(blocks[-1])):
        blocks = blocks[:-1]
    return blocks
