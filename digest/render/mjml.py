"""MJML → email HTML, compiled with MRML (the `mrml` package), its errors made one-line."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import mrml

from digest.errors import RenderError

_POSITION = re.compile(r"at position (\d+):\d+")
# MRML writes attribute values through Rust's Debug escaping: combining marks (Arabic harakat,
# Devanagari vowel signs, Thai tone marks), format characters (ZWJ, variation selectors),
# controls and the backslash come out as "\u{64b}" or "\\". As character references they
# pass through untouched and read the same in every client.
_ESCAPED_BY_MRML = frozenset({"Mn", "Me", "Mc", "Cf", "Cc", "Co", "Cn", "Cs", "Zl", "Zp"})
_ATTRIBUTE_VALUE = re.compile(r'="([^"]*)"')
# The title also becomes the body's aria-label.
_TITLE = re.compile(r"(<mj-title>)(.*?)(</mj-title>)", re.DOTALL)
# Characters XML 1.0 forbids even as references: one in a feed title would stop the parser
# and with it the whole issue. They have no visible form, so they are dropped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class CompiledHtml:
    html: str
    warnings: tuple[str, ...] = ()


def compile_mjml(source: str, *, origin: str) -> CompiledHtml:
    """Compile MJML text; `origin` names it in errors (e.g. the template it was rendered from).

    mj-include is refused (no loader): rendering reads no files besides the Jinja templates.
    """
    source = _NOT_XML.sub("", source)
    try:
        output = mrml.to_html(
            protect_attribute_text(source),
            parser_options=mrml.ParserOptions(include_loader=mrml.noop_loader()),
            render_options=mrml.RenderOptions(disable_comments=True),
        )
    except OSError as error:
        raise RenderError(
            f"{origin}: MJML does not compile: {_located(str(error), source)}"
        ) from error
    warnings = tuple(
        f"{origin}: MJML warning {warning.kind} on line {_line_of(source, warning.start)}"
        for warning in output.warnings
    )
    return CompiledHtml(html=output.content, warnings=warnings)


def protect_attribute_text(source: str) -> str:
    """MJML with what MRML would mangle in attribute values and the title as &#x…; references.

    Values are double-quoted in every template (autoescape writes a `"` in a value as &#34;),
    so `="…"` finds each value and nothing else.
    """
    source = _ATTRIBUTE_VALUE.sub(lambda match: f'="{_referenced(match.group(1))}"', source)
    return _TITLE.sub(lambda m: m.group(1) + _referenced(m.group(2)) + m.group(3), source)


def _referenced(text: str) -> str:
    if text.isascii() and "\\" not in text and text.isprintable():
        return text
    return "".join(
        f"&#x{ord(char):x};" if char == "\\" or _escaped_by_mrml(char) else char for char in text
    )


def _escaped_by_mrml(char: str) -> bool:
    return unicodedata.category(char) in _ESCAPED_BY_MRML


def _located(message: str, source: str) -> str:
    """MRML reports byte offsets; people want the line of the rendered MJML."""
    match = _POSITION.search(message)
    if match is None:
        return message
    line = _line_of(source, int(match.group(1)))
    return f"{message} (line {line} of the rendered MJML)"


def _line_of(source: str, byte_offset: int) -> int:
    return source.encode("utf-8")[:byte_offset].count(b"\n") + 1
