"""Render one issue variant (Jinja → MJML → HTML, plus text) and personalise it per recipient."""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from digest.errors import RenderError
from digest.models import OTHER_NEWS, Issue
from digest.render.filters import format_day, headline, http_url, truncate_words
from digest.render.i18n import html_lang, text_direction
from digest.render.markers import (
    PERSONAL_FIELDS,
    PersonalTemplate,
    escape_html,
    keep_text,
    marker_nonce,
    marker_variables,
    split_markers,
)
from digest.render.mjml import compile_mjml
from digest.render.text import tidy_text

# Gmail clips an HTML body over ~102 KB and hides the rest, footer and unsubscribe link included.
GMAIL_CLIP_BYTES = 102_000
# Personal links are longer than their markers; keep room for them below the clip.
SIZE_BUDGET_BYTES = GMAIL_CLIP_BYTES - 2_000
PREHEADER_HEADLINES = 3
PREHEADER_WORDS = 25
# Inboxes show about 60 characters of a subject; past 150 it is only noise.
SUBJECT_MAX_CHARACTERS = 150
_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2")


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What the templates know besides the issue.

    `locale` is a BCP 47 or Babel tag (its words come from the environment's translations, so
    build the environment with the same locale); `timezone` an IANA zone for dates; `web_url`
    the issue's web version ("" when there is none); `show_preferences` whether the footer
    links to a preferences page.
    """

    publication: str
    base_url: str
    locale: str = "en"
    timezone: str = "UTC"
    logo_url: str = ""
    postal_address: str = ""
    web_url: str = ""
    images: bool = True
    show_preferences: bool = False


@dataclass(frozen=True, slots=True)
class RenderedIssue:
    """One compiled variant, shared by its recipients until `personalise` fills the markers.

    Persist `nonce` with `html` and `text`: without it the markers cannot be filled.
    """

    subject: str
    preheader: str
    html: str  # compiled HTML with personalisation markers still in it
    text: str  # plain-text alternative with markers
    size_bytes: int  # of the html, UTF-8
    nonce: str
    warnings: tuple[str, ...] = ()
    # html and text split at their markers once, so each recipient costs one join per part.
    html_template: PersonalTemplate = field(init=False, repr=False, compare=False)
    text_template: PersonalTemplate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "html_template", split_markers(self.html, self.nonce))
        object.__setattr__(self, "text_template", split_markers(self.text, self.nonce))


@dataclass(frozen=True, slots=True)
class IssueSource:
    """The Jinja output for one variant, before MJML (what a preview can show for debugging)."""

    subject: str
    preheader: str
    nonce: str
    mjml: str
    text: str


def render_issue(
    issue: Issue, *, template: str, env: jinja2.Environment, context: RenderContext
) -> RenderedIssue:
    """Render `<template>.mjml.j2` and `<template>.txt.j2` for this issue variant, then compile."""
    source = render_source(issue, template=template, env=env, context=context)
    mjml_name = f"{template}.mjml.j2"
    compiled = compile_mjml(source.mjml, origin=mjml_name)
    size_bytes = len(compiled.html.encode("utf-8"))
    warnings = compiled.warnings
    if size_bytes > SIZE_BUDGET_BYTES:
        warnings += (
            f"{mjml_name}: html is {size_bytes} bytes, over the {SIZE_BUDGET_BYTES}-byte budget; "
            f"Gmail clips at ~{GMAIL_CLIP_BYTES} and hides the unsubscribe link",
        )
    rendered = RenderedIssue(
        subject=source.subject,
        preheader=source.preheader,
        html=compiled.html,
        text=source.text,
        size_bytes=size_bytes,
        nonce=source.nonce,
        warnings=warnings,
    )
    require_field(rendered, "unsubscribe_url", template, why="every digest needs one")
    return rendered


def require_field(rendered: RenderedIssue, field: str, template: str, *, why: str) -> None:
    """Refuse a render whose HTML or text part lacks the personal field `field` (a link)."""
    parts = (
        (f"{template}.mjml.j2", rendered.html_template),
        (f"{template}.txt.j2", rendered.text_template),
    )
    for name, part in parts:
        if field not in part.fields:
            raise RenderError(f"{name}: has no {{{{ {field} }}}} link; {why}")


def render_source(
    issue: Issue, *, template: str, env: jinja2.Environment, context: RenderContext
) -> IssueSource:
    """Run the Jinja templates only: MJML text and the tidied plain-text part, markers in both."""
    _check_locale_and_zone(context)
    nonce = marker_nonce(template, context, issue)
    subject = issue_subject(issue, context)
    preheader = issue_preheader(issue)
    variables = {
        **template_variables(context, subject=subject, preheader=preheader),
        "issue": issue,
        "web_version": False,
        **marker_variables(nonce),
    }
    return IssueSource(
        subject=subject,
        preheader=preheader,
        nonce=nonce,
        mjml=render_template(env, f"{template}.mjml.j2", variables),
        text=tidy_text(render_template(env, f"{template}.txt.j2", variables)),
    )


def render_web_version(
    issue: Issue, *, template: str, env: jinja2.Environment, context: RenderContext
) -> str:
    """The issue as a web page: the same template and compiler, with no recipient in it."""
    mjml = web_version_source(issue, template=template, env=env, context=context)
    return compile_mjml(mjml, origin=f"{template}.mjml.j2").html


def web_version_source(
    issue: Issue, *, template: str, env: jinja2.Environment, context: RenderContext
) -> str:
    """The web version's MJML. The template sees `web_version` true and must leave out every
    personal field: using one is an error."""
    _check_locale_and_zone(context)
    subject = issue_subject(issue, context)
    variables = {
        **template_variables(context, subject=subject, preheader=issue_preheader(issue)),
        "issue": issue,
        "web_version": True,
        **{name: _NoPersonalField(name) for name in PERSONAL_FIELDS},
    }
    return render_template(env, f"{template}.mjml.j2", variables)


def template_variables(context: RenderContext, *, subject: str, preheader: str) -> dict[str, Any]:
    """What every email template sees, whatever it is about (digest, confirmation, welcome)."""
    _check_locale_and_zone(context)
    direction = text_direction(context.locale)
    return {
        "subject": subject,
        "preheader": preheader,
        "publication": context.publication,
        "base_url": context.base_url,
        "logo_url": http_url(context.logo_url),
        "postal_address": context.postal_address,
        "web_url": context.web_url,
        "images": context.images,
        "show_preferences": context.show_preferences,
        "other_news": OTHER_NEWS,
        "locale": context.locale,
        "lang": html_lang(context.locale),
        "dir": direction,
        "align": "right" if direction == "rtl" else "left",
        "timezone": context.timezone,
    }


class _NoPersonalField(jinja2.StrictUndefined):
    """A personal field in the web version: there is no recipient, so using it is an error."""

    def __init__(self, name: str) -> None:
        super().__init__(
            hint=f"{name} is personal; the web version has no recipient (check web_version)",
            name=name,
        )


def personalise(rendered: RenderedIssue, values: Mapping[str, str]) -> tuple[str, str]:
    """(html, text) for one recipient: markers filled, values HTML-escaped in the html part."""
    html = rendered.html_template.fill(values, escape_html)
    text = rendered.text_template.fill(values, keep_text)
    return html, text


def issue_subject(issue: Issue, context: RenderContext) -> str:
    """The editor's subject, else '<title> — <day>'; one line (a newline in a Subject header
    would start a new header)."""
    if issue.subject.strip():
        return headline(issue.subject, SUBJECT_MAX_CHARACTERS)
    day = format_day(issue.created, locale=context.locale, timezone=context.timezone)
    return headline(f"{issue.title} — {day}", SUBJECT_MAX_CHARACTERS)


def issue_preheader(issue: Issue) -> str:
    """The first headlines, as the inbox teaser beside the subject."""
    headlines = [article.title for section in issue.sections for article in section.articles]
    teaser = " · ".join(headline(title) for title in headlines[:PREHEADER_HEADLINES] if title)
    return truncate_words(teaser or headline(issue.intro) or headline(issue.title), PREHEADER_WORDS)


def _check_locale_and_zone(context: RenderContext) -> None:
    html_lang(context.locale)  # raises RenderError for an unknown locale
    try:
        ZoneInfo(context.timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise RenderError(f"unknown timezone {context.timezone!r}") from error


def render_template(env: jinja2.Environment, name: str, variables: dict[str, Any]) -> str:
    """Render one template; every failure becomes a one-line RenderError naming file and line."""
    with template_errors(name):
        return env.get_template(name).render(variables)


@contextmanager
def template_errors(name: str) -> Iterator[None]:
    """Turn what rendering template `name` raises into a one-line RenderError with its place."""
    try:
        yield
    except jinja2.TemplateNotFound as error:
        raise RenderError(f"template {error.name!r} not found") from error
    except jinja2.TemplateSyntaxError as error:
        where = f"{error.filename or name}:{error.lineno}"
        raise RenderError(f"{where}: template syntax error: {_one_line(error.message)}") from error
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as error:
        where = _template_location(error, name)
        raise RenderError(f"{where}: {type(error).__name__}: {_one_line(str(error))}") from error


def _template_location(error: BaseException, name: str) -> str:
    """`path:line` of the innermost template frame in the traceback Jinja rewrote."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename.endswith(_TEMPLATE_SUFFIXES)
    ]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else name


def _one_line(message: str | None) -> str:
    return " ".join((message or "").split())
