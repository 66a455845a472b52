"""Boilerplate learned per source: paragraphs that recur across a source's articles are dropped."""

from __future__ import annotations

import dataclasses
import hashlib
import html as html_lib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import lxml.etree
import lxml.html

from digest.ingest.normalize import shorten
from digest.models import Article

MIN_ARTICLES = 3  # a paragraph seen in this many distinct articles of one source is boilerplate
# Part of every fingerprint: changing the normal form below means raising it, so the counts the
# store holds for the old form are never mistaken for the new one.
NORMAL_FORM_VERSION = 1
# Stripping that leaves fewer words than this, out of an article at least twice as long, took the
# story itself (a source whose every item is the same teaser): the article is kept whole.
MIN_KEPT_WORDS = 20
SUMMARY_LIMIT = 300  # as the extractors cut summaries
NAVIGATION_MAX_WORDS = 6
# Digits are folded so "© 2024" or "12 comments" recur, but only in paragraphs with few numbers:
# in "QEMU 9.1.0 contains 2800+ commits from 263 authors" the numbers are the news.
MAX_FOLDED_NUMBERS = 2

# Template text that names the article itself ("The post <title> appeared first on <site>.")
# recurs only once the article's own title and URL are masked.
_SELF_MASK = "{self}"
_DIGITS = re.compile(r"\d+")
_ALNUM = re.compile(r"[^\W_]")
# Lead-ins whose following links or list are other stories: they go together.
_NAVIGATION = re.compile(
    r"related( (articles|stories|posts|news|content|coverage|reading|links))?"
    r"|see also|read (more|also|next)|also read|further reading|recommended( \w+)?"
    r"|more (on|from|about|in) .+|more (stories|articles|news|coverage)"
    r"|you (may|might) also (like|enjoy)"
)
# Elements that html_to_text sets apart as paragraphs.
_PARAGRAPH_TAGS = frozenset(
    {
        "p", "div", "section", "article", "blockquote", "pre", "table", "ul", "ol", "dl",
        "h1", "h2", "h3", "h4", "h5", "h6", "figure", "header", "footer", "aside", "hr",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"li", "tr", "dt", "dd", "figcaption", "caption", "br"})
_HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_EMPHASIS_TAGS = ("strong", "b")


def paragraph_fingerprints(article: Article) -> frozenset[str]:
    """Fingerprints of the article's paragraphs (short stable hex strings, blake2b 8 bytes)."""
    masks = _masks(article)
    prints = (_fingerprint(paragraph, masks) for paragraph in _paragraphs(article.text))
    return frozenset(fingerprint for fingerprint in prints if fingerprint)


def recurring_paragraphs(
    articles: Sequence[Article], min_articles: int = MIN_ARTICLES
) -> frozenset[str]:
    """Fingerprints found in at least min_articles distinct articles of the batch (same source)."""
    if min_articles < 2:
        raise ValueError(f"min_articles must be at least 2, not {min_articles}")
    by_article: dict[str, set[str]] = {}
    for article in articles:  # the same article twice in a batch is still one article
        by_article.setdefault(article.id, set()).update(paragraph_fingerprints(article))
    counts = Counter(fingerprint for prints in by_article.values() for fingerprint in prints)
    return frozenset(fingerprint for fingerprint, count in counts.items() if count >= min_articles)


def strip_boilerplate(article: Article, boilerplate: frozenset[str]) -> Article:
    """The article without the paragraphs whose fingerprints are in boilerplate.

    They leave .text and .html (the HTML blocks with the same fingerprint) alike; a summary cut
    from removed text is cut again. The same object comes back when nothing matches, or when
    stripping would leave (next to) nothing of the article.
    """
    if not boilerplate:
        return article
    masks = _masks(article)
    paragraphs = _paragraphs(article.text)
    prints = [_fingerprint(paragraph, masks) for paragraph in paragraphs]
    if not any(fingerprint in boilerplate for fingerprint in prints if fingerprint):
        return article
    known = dict(zip(map(_one_line, paragraphs), prints, strict=True))

    def fingerprint(text: str) -> str:
        """A paragraph of the HTML is one of the text's, but for spacing: look it up first."""
        line = _one_line(text if text.isascii() else unicodedata.normalize("NFC", text))
        return known[line] if line in known else _fingerprint(text, masks)

    root = _parse(article.html)
    if root is None and article.html.strip():
        return article  # HTML we cannot read would keep what the text loses
    html = _HtmlParagraphs(root, fingerprint) if root is not None else None
    doomed = _doomed(paragraphs, prints, boilerplate, html.blocks if html else [])
    kept = [i for i, fingerprint in enumerate(prints) if fingerprint not in doomed]
    if not doomed or _too_little_left(kept, paragraphs, prints):
        return article
    return dataclasses.replace(
        article,
        text="\n\n".join(paragraphs[i] for i in kept),
        html=html.without(doomed) if html else article.html,
        summary=_summary_without(article.summary, paragraphs, prints, doomed),
    )


# --- fingerprints ---------------------------------------------------------------------------------


def _paragraphs(text: str) -> list[str]:
    return [paragraph for paragraph in text.split("\n\n") if paragraph.strip()]


def _folded(text: str) -> str:
    if text.isascii():  # NFKC leaves ASCII alone, and casefold is lower there: a faster path
        return " ".join(text.lower().split())
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _masks(article: Article) -> tuple[str, ...]:
    """The article's own title and URLs, folded, longest first."""
    terms = {_folded(term) for term in (article.title, article.url, article.canonical_url)}
    return tuple(sorted((term for term in terms if _ALNUM.search(term)), key=len, reverse=True))


def _normal_form(paragraph: str, masks: tuple[str, ...]) -> str:
    """One spelling for a paragraph wherever it appears: case, digits, spacing, edges folded."""
    text = _folded(paragraph)
    for term in masks:
        text = _masked(text, term)
    if _DIGITS.search(text) and len(_DIGITS.findall(text)) <= MAX_FOLDED_NUMBERS:
        text = _DIGITS.sub("0", text)
    start, end = 0, len(text)
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    return text[start:end]


def _masked(text: str, term: str) -> str:
    """The text with each whole-word occurrence of term replaced by the mask."""
    start = text.find(term)
    while start >= 0:
        end = start + len(term)
        if (start == 0 or not text[start - 1].isalnum()) and (
            end == len(text) or not text[end].isalnum()
        ):
            text = text[:start] + _SELF_MASK + text[end:]
            start = text.find(term, start + len(_SELF_MASK))
        else:
            start = text.find(term, start + 1)
    return text


def _fingerprint(paragraph: str, masks: tuple[str, ...]) -> str:
    """The paragraph's fingerprint, or "" for one with no letters or digits (a separator)."""
    normal = _normal_form(paragraph, masks)
    if not normal:
        return ""
    salted = f"{NORMAL_FORM_VERSION}\n{normal}"
    return hashlib.blake2b(salted.encode("utf-8"), digest_size=8).hexdigest()


# --- which paragraphs go --------------------------------------------------------------------------


def _doomed(
    paragraphs: list[str], prints: list[str], boilerplate: frozenset[str], blocks: list[_Block]
) -> frozenset[str]:
    """Fingerprints to remove: recurring paragraphs, less section headings, plus navigation."""
    headings = {b.fingerprint for b in blocks if b.fingerprint in boilerplate and b.is_heading()}
    count = len(paragraphs)
    drop = [False] * count
    navigation = [
        bool(p) and p in boilerplate and _is_navigation(t)
        for p, t in zip(prints, paragraphs, strict=True)
    ]
    link_only = {b.fingerprint for b in blocks if b.is_link_only()} if any(navigation) else set()
    # Backwards, so a heading followed by a kept heading ("Abstract", then "Methods") stays too.
    for index in reversed(range(count)):
        if not prints[index] or prints[index] not in boilerplate:
            continue
        following = index + 1 < count
        is_heading = (
            prints[index] in headings
            or paragraphs[index].rstrip().endswith(":")
            or (following and _is_list(paragraphs[index + 1]))
        )
        # A recurring section heading ("Conclusion", "Links:", a list's label) introduces this
        # article's own text: it stays while that text does.
        drop[index] = navigation[index] or not (is_heading and following and not drop[index + 1])
    for index in range(count):
        if not navigation[index]:
            continue
        follower = index + 1
        while follower < count and (
            _is_list(paragraphs[follower]) or prints[follower] in link_only
        ):
            drop[follower] = True
            follower += 1
    dropped = {prints[i] for i in range(count) if drop[i]}
    kept = {prints[i] for i in range(count) if not drop[i]}
    # One fingerprint, one fate: the text and the HTML must lose the same paragraphs.
    return frozenset(dropped - kept - {""})


def _is_navigation(paragraph: str) -> bool:
    normal = _normal_form(paragraph, ())
    return len(normal.split()) <= NAVIGATION_MAX_WORDS and bool(_NAVIGATION.fullmatch(normal))


def _is_list(paragraph: str) -> bool:
    return all(line.startswith("- ") for line in paragraph.split("\n"))


def _too_little_left(kept: list[int], paragraphs: list[str], prints: list[str]) -> bool:
    """Whether the kept paragraphs are no article: no words at all, or a scrap of a long one."""
    kept_words = sum(len(paragraphs[i].split()) for i in kept if prints[i])
    all_words = sum(len(paragraph.split()) for paragraph in paragraphs)
    return kept_words == 0 or (kept_words < MIN_KEPT_WORDS and all_words >= 2 * MIN_KEPT_WORDS)


# --- the HTML view --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """Inline content between blocks: the lead element's text (or tail), then elements."""

    lead: lxml.html.HtmlElement
    lead_is_text: bool
    elements: list[lxml.html.HtmlElement] = field(default_factory=list)
    # Line breaks that make a blank line before or after the run; one set goes with it.
    breaks_before: list[lxml.html.HtmlElement] = field(default_factory=list)
    breaks_after: list[lxml.html.HtmlElement] = field(default_factory=list)


@dataclass(slots=True)
class _Block:
    """One paragraph of the HTML: a block element, or a run of inline content between blocks."""

    fingerprint: str
    text: str
    container: lxml.html.HtmlElement
    elements: list[lxml.html.HtmlElement]
    run: _Run | None = None  # None for a block element, elements[0]
    tag: str = ""

    def is_heading(self) -> bool:
        """A section heading: a heading element, or a paragraph all in bold."""
        return self.tag in _HEADING_TAGS or _all_inside(self.text, self.elements, _EMPHASIS_TAGS)

    def is_link_only(self) -> bool:
        return _all_inside(self.text, self.elements, ("a",))


class _HtmlParagraphs:
    """An article's HTML read the way html_to_text reads it: paragraphs, each with its nodes."""

    def __init__(self, root: lxml.html.HtmlElement, fingerprint: Callable[[str], str]) -> None:
        self.root = root
        self._fingerprint = fingerprint
        self._containers = _containers(root)
        self.blocks = list(self._read(root))

    def _read(self, container: lxml.html.HtmlElement) -> Iterator[_Block]:
        run = _Run(container, lead_is_text=True)
        for child in container:
            tag = child.tag if isinstance(child.tag, str) else ""
            if child not in self._containers and tag not in _PARAGRAPH_TAGS:
                run.elements.append(child)
                continue
            yield from self._read_run(run, container)
            if child in self._containers:
                yield from self._read(child)
            elif fingerprint := self._fingerprint(text := _plain_text(child)):
                yield _Block(fingerprint, text, container, [child], tag=tag)
            run = _Run(child, lead_is_text=False)
        yield from self._read_run(run, container)

    def _read_run(self, run: _Run, container: lxml.html.HtmlElement) -> Iterator[_Block]:
        """The run's paragraphs: line breaks in a row (a blank line, to html_to_text) split it."""
        pieces = [_Run(run.lead, run.lead_is_text)]
        breaks: list[lxml.html.HtmlElement] = []
        for element in [*run.elements, None]:
            if element is not None and element.tag == "br":
                breaks.append(element)
                if not (element.tail or "").strip():
                    continue
            if len(breaks) >= 2:
                pieces[-1].breaks_after = breaks
                pieces.append(_Run(breaks[-1], lead_is_text=False, breaks_before=breaks))
            else:
                pieces[-1].elements.extend(breaks)
            breaks = []
            if element is not None and element.tag != "br":
                pieces[-1].elements.append(element)
        for piece in pieces:
            lead = (piece.lead.text if piece.lead_is_text else piece.lead.tail) or ""
            text = lead + "".join(_plain_text(element, True) for element in piece.elements)
            if fingerprint := self._fingerprint(text):
                yield _Block(fingerprint, text, container, piece.elements, run=piece)

    def without(self, doomed: frozenset[str]) -> str:
        """The HTML without the paragraphs with these fingerprints (the tree is changed)."""
        # Last first: removing a run clears the tail of the block before it, which may go next.
        gone = [block for block in reversed(self.blocks) if block.fingerprint in doomed]
        for block in gone:
            _remove(block)
        for block in gone:
            _drop_if_emptied(block.container, self.root)
        # Still sanitised: the tree only lost nodes, and lxml escapes what it writes back.
        inner = html_lib.escape(self.root.text or "", quote=False)
        return (inner + "".join(_markup(child) for child in self.root)).strip()


def _parse(html: str) -> lxml.html.HtmlElement | None:
    if not html.strip():
        return None
    try:
        return lxml.html.fragment_fromstring(html, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return None


def _markup(element: lxml.html.HtmlElement) -> str:
    return lxml.html.tostring(element, encoding="unicode", with_tail=True)


def _containers(root: lxml.html.HtmlElement) -> set[lxml.html.HtmlElement]:
    """Elements that html_to_text may split into paragraphs: those holding a block or blank line.

    Saying yes too often costs nothing: a lone paragraph inside (a quote's <p>) is the same one.
    """
    found: set[lxml.html.HtmlElement] = set()
    for element in root.iterdescendants():
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in _PARAGRAPH_TAGS or (tag == "br" and _opens_blank_line(element)):
            for ancestor in element.iterancestors():
                if ancestor in found:
                    break
                found.add(ancestor)
    return found


def _opens_blank_line(br: lxml.html.HtmlElement) -> bool:
    following = br.getnext()
    return following is not None and following.tag == "br" and not (br.tail or "").strip()


def _plain_text(element: lxml.html.HtmlElement, with_tail: bool = False) -> str:
    """The element's words as html_to_text spells them, in one paragraph, spacing aside."""
    parts: list[str] = []
    _collect_words(element, parts)
    if with_tail:
        parts.append(element.tail or "")
    return "".join(parts)


def _collect_words(element: lxml.html.HtmlElement, parts: list[str]) -> None:
    tag = element.tag if isinstance(element.tag, str) else ""  # comments show no text
    if tag == "pre":
        parts.append(f" {element.text_content()} ")
        return
    if tag in _PARAGRAPH_TAGS or tag in _LINE_TAGS:
        parts.append(" - " if tag == "li" else " ")
    if tag:
        parts.append(element.text or "")
    for child in element:
        _collect_words(child, parts)
        parts.append(child.tail or "")
    if tag in _PARAGRAPH_TAGS or tag in ("td", "th"):
        parts.append(" ")


def _all_inside(text: str, elements: list[lxml.html.HtmlElement], tags: tuple[str, ...]) -> bool:
    """True when every letter of the block is inside one of these tags (a link, bold text)."""
    inside = "".join(_text_inside(element, tags) for element in elements)
    letters = len(_ALNUM.findall(text))
    return letters > 0 and len(_ALNUM.findall(inside)) >= letters


def _text_inside(element: lxml.html.HtmlElement, tags: tuple[str, ...]) -> str:
    if element.tag in tags:
        return element.text_content()
    return "".join(_text_inside(child, tags) for child in element if isinstance(child.tag, str))


def _remove(block: _Block) -> None:
    run = block.run
    if run is None:
        block.elements[0].drop_tree()  # keeps its tail: that text belongs to the next paragraph
        return
    if run.lead_is_text:
        run.lead.text = None
    else:
        run.lead.tail = None
    for element in run.elements:
        parent = element.getparent()
        if parent is not None:
            parent.remove(element)  # with its tail, which is part of the run
    # The blank line before the run goes with it, or else the one after it.
    for breaks in (run.breaks_before, run.breaks_after):
        if breaks and all(br.getparent() is not None for br in breaks):
            for br in breaks:
                br.drop_tree()  # the last one's tail opens the next paragraph
            return


def _drop_if_emptied(container: lxml.html.HtmlElement | None, root: lxml.html.HtmlElement) -> None:
    """A container (a list, a quote) whose every paragraph went goes too, and so on upwards."""
    while (
        container is not None
        and container is not root
        and container.getparent() is not None
        and not "".join(container.itertext()).strip()
        and container.find(".//img") is None
    ):
        parent = container.getparent()
        container.drop_tree()
        container = parent


# --- the summary ----------------------------------------------------------------------------------


def _summary_without(
    summary: str, paragraphs: list[str], prints: list[str], doomed: frozenset[str]
) -> str:
    """A summary cut from the text is cut again from what is kept; any other (a feed's own
    description, which may carry the same footer) loses the removed paragraphs' text."""
    head = summary.removesuffix("…")[:20]
    for start, paragraph in enumerate(paragraphs):
        if not head or not _one_line(paragraph).startswith(head):
            continue
        after = [
            p for p, f in zip(paragraphs[start:], prints[start:], strict=True) if f not in doomed
        ]
        if not after:
            break  # everything from there went: what is left is cut from the summary below
        if summary == shorten(" ".join(paragraphs[start:]), SUMMARY_LIMIT):
            return shorten(" ".join(after), SUMMARY_LIMIT)
        if summary == shorten(paragraph, SUMMARY_LIMIT):
            return shorten(after[0], SUMMARY_LIMIT)
    cut = summary
    for paragraph, fingerprint in zip(paragraphs, prints, strict=True):
        if fingerprint in doomed:
            cut = cut.replace(_one_line(paragraph), " ")
    cut = _one_line(cut)
    return shorten(cut, SUMMARY_LIMIT) if cut != summary and _ALNUM.search(cut) else summary


def _one_line(text: str) -> str:
    return " ".join(text.split())
