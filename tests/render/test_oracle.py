"""The bundled template against the official MJML compiler (npm mjml 4.18.0, strict validation).

MRML compiles our emails; the official compiler is the reference. For each sample issue the
Jinja-rendered MJML must validate with zero errors, and MRML's HTML must equal the official
HTML element for element, attribute for attribute and text for text, up to the differences
listed in ALLOWED_DIFFERENCES.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from digest.models import Section
from digest.render.issue import RenderContext, render_source
from digest.render.mjml import compile_mjml
from tests.render.sample_issue import sample_article, sample_issue

pytestmark = pytest.mark.slow

ORACLE_DIR = Path(__file__).resolve().parent / "oracle"

# Known, harmless differences between MRML and mjml 4.18 (see ../shared/reference/MJML.md),
# each undone by `tokens` before comparing:
ALLOWED_DIFFERENCES = (
    'MRML omits alt="" (and mjml writes class="" on Outlook cells): empty alt/class dropped',
    "the order of class names and of attributes: both sorted",
    "mjml merges adjacent Outlook conditional comments, MRML does not: merged",
    "whitespace in text, CSS and comments: collapsed",
)


@dataclass(frozen=True, slots=True)
class OfficialHtml:
    html: str
    errors: tuple[str, ...]
    ms: float


class OfficialCompiler:
    """One long-lived `node compile.js`: a JSON request per line in, a JSON reply per line out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self._next_id = 0

    def compile(self, mjml: str) -> OfficialHtml:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._next_id += 1
        self._process.stdin.write(json.dumps({"id": self._next_id, "mjml": mjml}) + "\n")
        self._process.stdin.flush()
        reply = json.loads(self._process.stdout.readline())
        assert reply["id"] == self._next_id
        return OfficialHtml(reply["html"], tuple(reply["errors"]), reply["ms"])


@pytest.fixture(scope="module")
def official() -> Iterator[OfficialCompiler]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the official MJML compiler")
    if not (ORACLE_DIR / "node_modules" / "mjml").is_dir():
        try:
            installed = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=ORACLE_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci took over 5 minutes (registry unreachable?)")
        if installed.returncode != 0:
            pytest.skip(f"npm ci failed (registry unreachable?): {installed.stderr[-300:]}")
    with subprocess.Popen(
        [node, "compile.js"],
        cwd=ORACLE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    ) as process:
        yield OfficialCompiler(process)
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


_CONDITIONAL = re.compile(r"\[if (?P<condition>[^\]]+)\]>(?P<markup>.*)<!\[endif\]", re.DOTALL)


class _Tokens(HTMLParser):
    """Elements with their attributes, text, CSS and comment bodies, whitespace-normalised."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[tuple[str, ...]] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        kept = []
        for name, value in attrs:
            if name in {"alt", "class"} and not value:
                continue
            if name == "class" and value:
                value = " ".join(sorted(value.split()))
            kept.append(f"{name}={value}")
        self.tokens.append(("<" + tag, *sorted(kept)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self.tokens.append(("/" + tag,))
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:  # the compilers indent CSS differently; compare it without spaces
            self.tokens.append(("#css", "".join(data.split())))
        elif text := " ".join(data.split()):
            self.tokens.append(("#text", text))

    def handle_comment(self, data: str) -> None:
        # Outlook's conditional comments carry real markup: compare it like the rest.
        if conditional := _CONDITIONAL.fullmatch(data):
            self.tokens.append(("#if", conditional["condition"]))
            self.tokens.extend(tokens(conditional["markup"]))
            self.tokens.append(("#endif",))
        else:
            self.tokens.append(("#comment", "".join(data.split())))


def tokens(html: str) -> list[tuple[str, ...]]:
    parser = _Tokens()
    parser.feed(html)
    parser.close()
    return _merged_conditionals(parser.tokens)


def _merged_conditionals(found: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """`<![endif]--><!--[if mso]>` between two blocks of the same condition joins them."""
    merged: list[tuple[str, ...]] = []
    condition = ""
    for token in found:
        if token[0] == "#if":
            if merged and merged[-1] == ("#endif",) and token[1] == condition:
                merged.pop()
                continue
            condition = token[1]
        merged.append(token)
    return merged


def _odd_issue():
    """Edge cases in one issue: no date, no text, a javascript: link, title = publication."""
    articles = (
        sample_article(0, published=None),
        sample_article(1, text="", summary=""),
        sample_article(2, url="javascript:alert(1)", also_in=("Le Monde",)),
    )
    return replace(sample_issue(1), title="Demo Digest", sections=(Section("Misc", articles),))


SAMPLES = {
    "thirty-articles-with-intro": (sample_issue(30, intro="Hello readers,\n\nA busy week."), "en"),
    "hostile-article-text": (sample_issue(6, hostile=True), "en"),
    "edge-cases-in-german": (_odd_issue(), "de"),
}


@pytest.mark.parametrize("sample", SAMPLES, ids=list(SAMPLES))
def test_bundled_template_validates_and_mrml_matches_the_official_compiler(official, env, sample):
    issue, locale = SAMPLES[sample]
    context = RenderContext("Demo Digest", "https://digest.example.org", locale=locale)
    source = render_source(issue, template="digest", env=env, context=context)

    reference = official.compile(source.mjml)
    assert reference.errors == ()
    started = time.perf_counter()
    ours = compile_mjml(source.mjml, origin=sample).html
    mrml_ms = (time.perf_counter() - started) * 1000
    print(f"\n{sample}: mrml {mrml_ms:.1f} ms, npm mjml {reference.ms:.1f} ms")

    assert tokens(ours) == tokens(reference.html)


def test_oracle_reports_strict_validation_errors(official):
    """The oracle is not vacuous: an illegal attribute fails strict validation."""
    bad = "<mjml><mj-body><mj-section><mj-column><mj-text colour='red'>x</mj-text>"
    bad += "</mj-column></mj-section></mj-body></mjml>"
    assert any("colour" in error for error in official.compile(bad).errors)


def test_token_comparison_sees_a_changed_attribute():
    assert tokens('<a href="x" class="b a">t</a>') == tokens('<a class="a b" href="x">t</a>')
    assert tokens('<a href="x">t</a>') != tokens('<a href="y">t</a>')
    assert tokens('<img alt="" src="x">') == tokens('<img src="x">')
    assert tokens('<img alt="photo" src="x">') != tokens('<img src="x">')
    split = "<!--[if mso]><table><tr><![endif]--><!--[if mso]><td><![endif]-->"
    assert tokens(split) == tokens("<!--[if mso]><table><tr><td><![endif]-->")
    assert tokens(split) != tokens("<!--[if mso]><table><tr><![endif]-->")
