"""MJML → email HTML, compiled with MRML (the `mrml` package), its errors made one-line."""

from __future__ import annotations

import re
from dataclasses import dataclass

import mrml

from digest.errors import RenderError

_POSITION = re.compile(r"at position (\d+):\d+")


@dataclass(frozen=True, slots=True)
class CompiledHtml:
    html: str
    warnings: tuple[str, ...] = ()


def compile_mjml(source: str, *, origin: str) -> CompiledHtml:
    """Compile MJML text; `origin` names it in errors (e.g. the template it was rendered from).

    mj-include is refused (no loader): rendering reads no files besides the Jinja templates.
    """
    try:
        output = mrml.to_html(
            source,
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


def _located(message: str, source: str) -> str:
    """MRML reports byte offsets; people want the line of the rendered MJML."""
    match = _POSITION.search(message)
    if match is None:
        return message
    line = _line_of(source, int(match.group(1)))
    return f"{message} (line {line} of the rendered MJML)"


def _line_of(source: str, byte_offset: int) -> int:
    return source.encode("utf-8")[:byte_offset].count(b"\n") + 1
