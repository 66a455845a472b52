"""Editor-written Markdown (an issue's intro) as safe email HTML and as plain text.

The intro is data, never a template: `{{ 7*7 }}` in it is printed as written. Raw HTML in the
Markdown is shown as text (markdown-it's html option is off), and the HTML that comes out is
cleaned again with nh3, so only a small set of tags and http(s)/mailto links survive.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from functools import cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

_TAGS = {"p", "br", "strong", "em", "a", "ul", "ol", "li", "blockquote", "code", "h3", "h4"}
_ATTRIBUTES = {"a": {"href", "title"}}
_URL_SCHEMES = {"http", "https", "mailto"}
# A heading in an intro is a subheading of the email: #, ## and ### all become <h3>.
_HEADING_LEVEL = {"h1": "h3", "h2": "h3", "h3": "h3", "h4": "h4", "h5": "h4", "h6": "h4"}
# Twenty levels of nested lists or quotes are enough for any intro and bound the work.
_MAX_NESTING = 20


@cache
def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.options["maxNesting"] = _MAX_NESTING
    return parser.disable("image")


def markdown_html(source: str, *, styles: Mapping[str, str] | None = None) -> str:
    """The intro as sanitised HTML; `styles` maps a tag to the inline style it is given.

    Mail clients ignore much of a <style> block, so the template passes inline styles here.
    """
    tokens = _parser().parse(source)
    for token in tokens:
        if token.type in {"heading_open", "heading_close"}:
            token.tag = _HEADING_LEVEL[token.tag]
    html = _parser().renderer.render(tokens, _parser().options, {})
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener",
        set_tag_attribute_values={tag: {"style": style} for tag, style in (styles or {}).items()},
    ).strip()


def markdown_text(source: str, width: int = 78) -> str:
    """The intro as plain text filled to `width`: paragraphs apart, list items together,
    links written 'text <url>', URLs never broken."""
    blocks: list[str] = []
    prefixes: list[str] = []
    in_list_item = False
    for token in _parser().parse(source):
        if token.type in {"bullet_list_open", "ordered_list_open"}:
            prefixes.append("- ")
        elif token.type in {"bullet_list_close", "ordered_list_close"}:
            prefixes.pop()
            blocks.append("")
        elif token.type == "blockquote_open":
            prefixes.append("> ")
        elif token.type == "blockquote_close":
            prefixes.pop()
        elif token.type == "list_item_open":
            in_list_item = True
            if token.info:  # an ordered list keeps its numbers
                prefixes[-1] = f"{token.info}{token.markup} "
        elif token.type == "inline" and (text := _inline_text(token.children or [])):
            blocks.append(_filled(text, prefixes, width, first_line=in_list_item))
            in_list_item = False
            if not prefixes or prefixes[-1] == "> ":
                blocks.append("")
        elif token.type in {"code_block", "fence"}:
            blocks.extend([token.content.rstrip("\n"), ""])
    return "\n".join(blocks).strip("\n")


def _filled(text: str, prefixes: list[str], width: int, *, first_line: bool) -> str:
    """`text` wrapped under its list and quote markers; a list item's marker only once."""
    quote = "".join(prefix for prefix in prefixes if prefix == "> ")
    item = prefixes[-1] if prefixes and prefixes[-1] != "> " else ""
    depth = "  " * max(0, sum(prefix != "> " for prefix in prefixes) - 1)
    indent = quote + depth + " " * len(item)
    return textwrap.fill(
        text,
        width=width,
        initial_indent=quote + depth + (item if first_line else " " * len(item)),
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _inline_text(children: list[Token]) -> str:
    parts: list[str] = []
    href = ""
    link_text: list[str] = []
    for child in children:
        if child.type == "link_open":
            href = str(child.attrs.get("href", ""))
            link_text = []
        elif child.type == "link_close":
            label = "".join(link_text)
            parts.append(label if not href or href == label else f"{label} <{href}>")
            href = ""
        elif child.type in {"text", "code_inline"}:
            (link_text if href else parts).append(child.content)
        elif child.type in {"softbreak", "hardbreak"}:
            (link_text if href else parts).append(" ")
    return " ".join("".join(parts).split())
