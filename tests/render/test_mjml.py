"""compile_mjml: MRML output, and errors that point at the rendered MJML."""

from __future__ import annotations

import re
from html import unescape

import pytest

from digest.errors import RenderError
from digest.render.mjml import compile_mjml

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it


def test_compiles_mjml_to_html_with_the_preview_text():
    source = (
        "<mjml><mj-head><mj-preview>Teaser</mj-preview></mj-head><mj-body><mj-section>"
        "<mj-column><mj-text>Hello</mj-text></mj-column></mj-section></mj-body></mjml>"
    )
    compiled = compile_mjml(source, origin="t.mjml")
    assert compiled.html.startswith("<!doctype html>")
    assert "Teaser</div>" in compiled.html and "Hello</div>" in compiled.html
    assert compiled.warnings == ()


def test_broken_mjml_raises_with_its_line():
    source = "<mjml>\n<mj-head>\n<mj-html-attributes></mj-html-attributes>\n</mj-head></mjml>"
    with pytest.raises(RenderError, match=r"^t\.mjml: MJML does not compile: .*\(line 3 of"):
        compile_mjml(source, origin="t.mjml")


def test_includes_are_refused_so_rendering_reads_no_files():
    source = '<mjml><mj-body><mj-include path="/etc/passwd" /></mj-body></mjml>'
    with pytest.raises(RenderError, match="MJML does not compile"):
        compile_mjml(source, origin="t.mjml")


def test_truncated_mjml_raises():
    source = "<mjml><mj-body><mj-section><mj-column><mj-text>unclosed</mjml>"
    with pytest.raises(RenderError, match="unexpected end of stream"):
        compile_mjml(source, origin="t.mjml")


def test_text_mrml_would_escape_in_attributes_reaches_the_html_as_written():
    # Arabic harakat, Thai tone marks, Devanagari vowel signs, an emoji ZWJ sequence and its
    # variation selector, a backslash: MRML alone writes these as \u{...} or \\ in attributes.
    text = "مرحبًا ข่าว हिन्दी 👩\u200d💻 ❤️ AC\\DC"
    source = (
        f"<mjml><mj-head><mj-title>{text}</mj-title></mj-head><mj-body><mj-section><mj-column>"
        f'<mj-text><img alt="{text}" src="https://img.example.org/1.jpg" />'
        f'<a href="https://th.example.org/{text}">{text}</a></mj-text>'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    html = compile_mjml(source, origin="test").html
    assert "\\u{" not in html and "\\\\" not in html
    values = re.findall(r'(?:alt|aria-label)="([^"]*)"', html)
    assert len(values) == 2 and {unescape(value) for value in values} == {text}
    assert unescape(re.search(r"<title>(.*?)</title>", html).group(1)) == text
    assert f">{text}</a>" in html  # text content is left as it is
