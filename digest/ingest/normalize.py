"""Normal forms for what we ingest: canonical URLs, clean text, email-safe HTML."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import lxml.etree
import lxml.html
import nh3

# Parameters that only track the click; dropping them makes one story one URL.
TRACKING_PARAMS = frozenset({"fbclid", "gclid", "mc_cid", "mc_eid"})
TRACKING_PREFIXES = ("utm_",)
DEFAULT_PORTS = {"http": 80, "https": 443}

# What email clients render reliably and what cannot run code. Tables stay tables: unwrapped,
# their cells ran together into one word per row ("1Kyle Busch5040").
TABLE_TAGS = frozenset({"table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td"})
ALLOWED_TAGS = TABLE_TAGS | frozenset(
    {"p", "a", "em", "strong", "ul", "ol", "li", "blockquote", "h2", "h3", "h4", "br", "img"}
)
ALLOWED_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt"}}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Dropped with their content, not just unwrapped: their text is never article text.
DROPPED_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "noscript", "object", "embed", "template", "svg", "math"}
)
_IMG_WITHOUT_SRC = re.compile(r"<img(?![^>]*\ssrc=)[^>]*>")

SOFT_HYPHEN = "\u00ad"
_INLINE_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_HTML_SPACE = re.compile(r"\s+")  # HTML renders any run of whitespace as one space

# Elements that start a new line (or paragraph) when HTML is read as text.
_PARAGRAPH_TAGS = frozenset(
    {
        "p", "div", "section", "article", "blockquote", "pre", "table", "ul", "ol", "dl",
        "h1", "h2", "h3", "h4", "h5", "h6", "figure", "header", "footer", "aside", "hr",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"li", "tr", "dt", "dd", "figcaption", "caption"})
_INVISIBLE_TAGS = DROPPED_WITH_CONTENT | {"head", "title"}


def canonical_url(url: str) -> str:
    """One spelling per page: lower-case scheme/host, no tracking, fragment or default port."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return url
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        host = f"{userinfo}@{host}"
    query = sorted(
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_tracking_param(key)
    )
    return urlunsplit((scheme, host, parts.path or "/", urlencode(query), ""))


def _is_tracking_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def clean_text(text: str) -> str:
    """NFC, single spaces inside lines, at most one blank line between paragraphs, stripped.

    Soft hyphens go: they only mark where a line may break, and inside a word they split it
    for search and comparison ("Mit\u00adtel\u00adal\u00adter").
    """
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace(SOFT_HYPHEN, "")
    lines = [_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def shorten(text: str, limit: int = 300) -> str:
    """The text on one line, cut at a word boundary to at most `limit` characters."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:-")
    return f"{cut}…"


def sanitize_html(html: str, base_url: str = "") -> str:
    """HTML safe to put in an email: an allow-list of tags, absolute http(s) links, no code."""

    def absolutise(tag: str, attribute: str, value: str) -> str | None:
        if attribute in ("href", "src"):
            try:
                return urljoin(base_url, value.strip()) if base_url else value.strip()
            except ValueError:  # a malformed host such as "//[::1": no link to keep
                return None
        return value

    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        link_rel="noopener noreferrer",
        strip_comments=True,
        attribute_filter=absolutise,
    )
    return _IMG_WITHOUT_SRC.sub("", cleaned).strip()


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML fragment: paragraphs as blank-line separated blocks."""
    if not html.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (lxml.etree.ParserError, ValueError):
        return clean_text(html)
    chunks: list[str] = []
    _collect_text(root, chunks)
    return clean_text("".join(chunks))


def _collect_text(element: lxml.html.HtmlElement, chunks: list[str]) -> None:
    tag = element.tag if isinstance(element.tag, str) else ""
    tail = _HTML_SPACE.sub(" ", element.tail or "")
    if tag in _INVISIBLE_TAGS:
        chunks.append(tail)
        return
    before, after = _separators(tag)
    chunks.append(before)
    if tag == "pre":
        chunks.append(element.text_content())
        chunks.append(after + tail)
        return
    if tag:  # comments and processing instructions carry no visible text
        chunks.append(_HTML_SPACE.sub(" ", element.text or ""))
    for child in element:
        _collect_text(child, chunks)
    chunks.append(after + tail)


def _separators(tag: str) -> tuple[str, str]:
    """What a block element puts before and after its text."""
    if tag in _PARAGRAPH_TAGS:
        return "\n\n", "\n\n"
    if tag == "li":
        return "\n- ", ""
    if tag in _LINE_TAGS or tag == "br":
        return "\n", ""
    if tag in ("td", "th"):
        return "", " "
    return "", ""
