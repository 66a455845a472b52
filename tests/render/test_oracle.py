"""The bundled templates against the official MJML compiler (npm mjml 4.18.0, strict validation).

MRML compiles our emails; the official compiler is the reference. For every bundled email (the
digest, its web version, the notices) the Jinja-rendered MJML must validate with zero errors,
and MRML's HTML must equal the official HTML element for element, attribute for attribute and
text for text, up to the differences listed in ALLOWED_DIFFERENCES.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pytest

from digest.models import Issue, Section
from digest.render.environment import template_environment
from digest.render.issue import (
    RenderContext,
    render_source,
    render_web_version,
    web_version_source,
)
from digest.render.mjml import compile_mjml
from digest.render.notice import notice_source, render_notice
from digest.review import review_source
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
    # mjml 4.18 stopped writing it (mjmlio/mjml#2728): it is CSS, not an HTML attribute.
    'MRML writes vertical-align="middle" as an attribute on the cell around an mj-button; '
    "no client reads it (valign is the HTML attribute, and the button's own styles align it): "
    "dropped on td",
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


def launch_official_compiler(node: str) -> subprocess.Popen[str]:
    """`node compile.js` in the oracle folder: JSON lines in, JSON lines out."""
    return subprocess.Popen(
        [node, "compile.js"],
        cwd=ORACLE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


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
    with launch_official_compiler(node) as process:
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
            if name == "vertical-align" and tag == "td":
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


@cache
def _environment(locale: str) -> jinja2.Environment:
    return template_environment(locale=locale)


def _assert_validates_and_mrml_matches(official: OfficialCompiler, name: str, mjml: str) -> None:
    reference = official.compile(mjml)
    assert reference.errors == ()
    started = time.perf_counter()
    ours = compile_mjml(mjml, origin=name).html
    mrml_ms = (time.perf_counter() - started) * 1000
    print(f"\n{name}: mrml {mrml_ms:.1f} ms, npm mjml {reference.ms:.1f} ms")
    assert tokens(ours) == tokens(reference.html)


def _odd_issue() -> Issue:
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
def test_bundled_template_validates_and_mrml_matches_the_official_compiler(official, sample):
    issue, locale = SAMPLES[sample]
    context = RenderContext("Demo Digest", "https://digest.example.org", locale=locale)
    source = render_source(issue, template="digest", env=_environment(locale), context=context)
    _assert_validates_and_mrml_matches(official, sample, source.mjml)


# Every optional part of the emails on at once: what the bundled templates can show.
BASE_URL = "https://digest.example.org"
LOGO_URL = "https://digest.example.org/static/logo.png"
WEB_URL = "https://digest.example.org/issues/2025-W10"
POSTAL_ADDRESS = "Demo Digest, 1 Example Street, 75001 Paris, France"
ARCHIVE_URL = "https://digest.example.org/archive"
INTRO_MARKDOWN = (
    "Hello **readers**,\n\nThis week:\n\n- the regional rail budget\n"
    f"- [last year's issues]({ARCHIVE_URL})\n"
)


def _issue_with_every_part() -> Issue:
    """Four sections (so the contents list shows), a Markdown intro, pictures on some cards.

    The first two cards of each section have a picture: a lead picture, then a thumbnail.
    """
    issue = sample_issue(12, intro=INTRO_MARKDOWN)
    sections = tuple(
        replace(
            section,
            articles=tuple(
                replace(article, image=f"https://img.example.org/{article.id}.jpg")
                if position < 2
                else article
                for position, article in enumerate(section.articles)
            ),
        )
        for section in issue.sections
    )
    return replace(issue, sections=sections)


ISSUE_WITH_EVERY_PART = _issue_with_every_part()


def _context_with_every_part(locale: str) -> RenderContext:
    return RenderContext(
        "Demo Digest",
        BASE_URL,
        locale=locale,
        logo_url=LOGO_URL,
        postal_address=POSTAL_ADDRESS,
        web_url=WEB_URL,
        show_preferences=True,
    )


# What each notice is about (render_notice's `variables`), varied over topics and cadence.
NOTICE_VARIABLES: dict[str, dict[str, Any]] = {
    "confirm": {"list_title": "Demo Digest", "topics": ("Science", "Culture"), "expires_hours": 48},
    "welcome": {"list_title": "Demo Digest", "topics": ("Science",), "cadence": "weekly"},
    "preferences-changed": {"list_title": "Demo Digest", "topics": (), "cadence": "daily"},
}


def _digest_mjml(env: jinja2.Environment, context: RenderContext) -> str:
    return render_source(ISSUE_WITH_EVERY_PART, template="digest", env=env, context=context).mjml


def _web_version_mjml(env: jinja2.Environment, context: RenderContext) -> str:
    return web_version_source(ISSUE_WITH_EVERY_PART, template="digest", env=env, context=context)


def _notice_mjml(
    notice: str, env: jinja2.Environment, context: RenderContext, variables: Mapping[str, Any]
) -> str:
    return notice_source(notice, env=env, context=context, variables=variables).mjml


def _notice_source(notice: str) -> Callable[[jinja2.Environment, RenderContext], str]:
    return lambda env, context: _notice_mjml(notice, env, context, NOTICE_VARIABLES[notice])


# The editors' "waits for approval" email (digest/review.py): staff mail, English only.
REVIEW_URL = f"{BASE_URL}/editor/issues/7"
REVIEW_VARIABLES = {
    "list_title": "Demo Digest",
    "issue_title": "Demo Digest",
    "issue_number": 7,
    "period_key": "2026-W48",
    "item_count": 12,
    "sections": ["Science", "Culture"],
    "review_url": REVIEW_URL,
    "reason": "auto_approve is off",
}


def _review_mjml(env: jinja2.Environment, context: RenderContext) -> str:
    return review_source(env=env, context=context, variables=REVIEW_VARIABLES).mjml


@dataclass(frozen=True, slots=True)
class BundledEmail:
    """One bundled email in one language: how to get its MJML, and what that MJML must show."""

    locale: str
    mjml: Callable[[jinja2.Environment, RenderContext], str]
    shows: tuple[str, ...]  # fragments proving the optional parts are really in the sample


# Every optional part of the digest, each as the MJML fragment that only it writes.
DIGEST_PARTS = (
    "<ul",  # the intro's Markdown list
    f'href="{ARCHIVE_URL}"',  # the intro's Markdown link
    f'src="{LOGO_URL}"',
    'width="552"',  # a lead card's picture
    'width="96"',  # a thumbnail
    'href="#section-4"',  # the table of contents
    f'href="{WEB_URL}"',
    POSTAL_ADDRESS,
    ":preferences_url%%",
)
WEB_VERSION_PARTS = ("<ul", f'src="{LOGO_URL}"', 'width="96"', 'href="#section-4"', POSTAL_ADDRESS)
NOTICE_PARTS = (f'src="{LOGO_URL}"', POSTAL_ADDRESS)
LTR, RTL = ('dir="ltr"', 'align="left"'), ('dir="rtl"', 'align="right"')

BUNDLED_EMAILS = {
    "digest-english-every-part": BundledEmail("en", _digest_mjml, (*LTR, *DIGEST_PARTS)),
    "digest-arabic-rtl-every-part": BundledEmail("ar", _digest_mjml, (*RTL, *DIGEST_PARTS)),
    "web-version-english": BundledEmail(
        "en", _web_version_mjml, (*LTR, *WEB_VERSION_PARTS, "the web version of")
    ),
    "web-version-arabic-rtl": BundledEmail("ar", _web_version_mjml, (*RTL, *WEB_VERSION_PARTS)),
    "confirm-english": BundledEmail(
        "en", _notice_source("confirm"), (*LTR, *NOTICE_PARTS, "<mj-button", ":confirm_url%%")
    ),
    "confirm-arabic-rtl": BundledEmail(
        "ar", _notice_source("confirm"), (*RTL, *NOTICE_PARTS, "<mj-button", ":confirm_url%%")
    ),
    **{
        f"{notice}-{language}": BundledEmail(
            locale,
            _notice_source(notice),
            (*direction, *NOTICE_PARTS, ":unsubscribe_url%%", ":preferences_url%%"),
        )
        for notice in ("welcome", "preferences-changed")
        for language, locale, direction in (("english", "en", LTR), ("arabic-rtl", "ar", RTL))
    },
    "review-english": BundledEmail(
        "en", _review_mjml, (*LTR, *NOTICE_PARTS, "<mj-button", f'href="{REVIEW_URL}"')
    ),
}


# A real difference, not allowed: MRML 0.2.4 writes every attribute value with Rust's string
# escapes, so a combining mark becomes the text `\u{64b}`. The Arabic subjects of these two
# notices have one (U+0651 in "أكّد", U+064B in "مرحبًا"), and it reaches the body's aria-label.
@pytest.mark.parametrize(
    "name",
    [pytest.param(name, id=name) for name in BUNDLED_EMAILS],
)
def test_every_bundled_email_validates_and_mrml_matches_the_official_compiler(official, name):
    email = BUNDLED_EMAILS[name]
    mjml = email.mjml(_environment(email.locale), _context_with_every_part(email.locale))
    missing = [part for part in email.shows if part not in mjml]
    assert missing == [], f"{name}: the sample no longer shows {missing}"
    _assert_validates_and_mrml_matches(official, name, mjml)


LOCALES = {"english": "en", "arabic-rtl": "ar"}


@pytest.mark.parametrize("locale", LOCALES.values(), ids=list(LOCALES))
def test_web_version_mjml_is_what_render_web_version_compiles(locale):
    env, context = _environment(locale), _context_with_every_part(locale)
    compiled = compile_mjml(_web_version_mjml(env, context), origin="web version").html
    product = render_web_version(ISSUE_WITH_EVERY_PART, template="digest", env=env, context=context)
    assert compiled == product


@pytest.mark.parametrize("locale", LOCALES.values(), ids=list(LOCALES))
@pytest.mark.parametrize("notice", NOTICE_VARIABLES, ids=list(NOTICE_VARIABLES))
def test_notice_mjml_is_what_render_notice_compiles(notice, locale):
    env, context = _environment(locale), _context_with_every_part(locale)
    variables = NOTICE_VARIABLES[notice]
    compiled = compile_mjml(_notice_mjml(notice, env, context, variables), origin=notice).html
    product = render_notice(notice, env=env, context=context, variables=variables)
    assert compiled == product.html


# Characters Rust escapes in a string's Debug form, which MRML alone would write into attribute
# values as \u{...}: Arabic harakat, Thai tone marks, the emoji presentation selector U+FE0F,
# the zero-width joiner of emoji sequences, a backslash. compile_mjml hands them to MRML as
# character references, so they arrive as written.
ESCAPED_BY_MRML = ("مرحبًا", "ข่าว", "❤️", "👩\u200d💻", "AC\\DC")


@pytest.mark.parametrize(
    "text", ESCAPED_BY_MRML, ids=["harakat", "thai", "fe0f", "zwj", "backslash"]
)
def test_mrml_keeps_attribute_text_as_written(official, text):
    """A subject (aria-label), a card picture's alt and a link to a non-ASCII URL."""
    mjml = (
        f"<mjml><mj-head><mj-title>{text}</mj-title></mj-head>"
        '<mj-body background-color="#ffffff"><mj-section><mj-column>'
        f'<mj-text><img alt="{text}" src="https://img.example.org/1.jpg" />'
        f'<a href="https://th.example.org/{text}">{text}</a></mj-text>'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    _assert_validates_and_mrml_matches(official, "attribute text", mjml)


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
    assert tokens('<td vertical-align="middle">') == tokens("<td>")
    assert tokens('<td valign="middle">') != tokens("<td>")
