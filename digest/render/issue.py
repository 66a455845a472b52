"""Render one issue variant (Jinja → MJML → HTML, plus text) and personalise it per recipient."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from babel import Locale, UnknownLocaleError

from digest.errors import RenderError
from digest.models import Issue
from digest.render.filters import format_day, truncate_words
from digest.render.markers import (
    escape_html,
    fill_markers,
    keep_text,
    marker,
    marker_nonce,
    marker_variables,
)
from digest.render.mjml import compile_mjml
from digest.render.text import tidy_text

# Gmail clips an HTML body over ~102 KB and hides the rest, footer and unsubscribe link included.
GMAIL_CLIP_BYTES = 102_000
# Personal links are longer than their markers; keep room for them below the clip.
SIZE_BUDGET_BYTES = GMAIL_CLIP_BYTES - 2_000
PREHEADER_HEADLINES = 3
PREHEADER_WORDS = 25
_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2")


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What the templates know besides the issue. `timezone` is an IANA zone for dates."""

    publication: str
    base_url: str
    locale: str = "en"
    timezone: str = "UTC"


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
    unsubscribe = marker(source.nonce, "unsubscribe_url")
    for name, body in ((mjml_name, compiled.html), (f"{template}.txt.j2", source.text)):
        if unsubscribe not in body:
            raise RenderError(
                f"{name}: has no {{{{ unsubscribe_url }}}} link; every digest needs one"
            )
    size_bytes = len(compiled.html.encode("utf-8"))
    warnings = compiled.warnings
    if size_bytes > SIZE_BUDGET_BYTES:
        warnings += (
            f"{mjml_name}: html is {size_bytes} bytes, over the {SIZE_BUDGET_BYTES}-byte budget; "
            f"Gmail clips at ~{GMAIL_CLIP_BYTES} and hides the unsubscribe link",
        )
    return RenderedIssue(
        subject=source.subject,
        preheader=source.preheader,
        html=compiled.html,
        text=source.text,
        size_bytes=size_bytes,
        nonce=source.nonce,
        warnings=warnings,
    )


def render_source(
    issue: Issue, *, template: str, env: jinja2.Environment, context: RenderContext
) -> IssueSource:
    """Run the Jinja templates only: MJML text and the tidied plain-text part, markers in both."""
    _check_locale_and_zone(context)
    nonce = marker_nonce(template, context, issue)
    subject = issue_subject(issue, context)
    preheader = issue_preheader(issue)
    variables: dict[str, Any] = {
        "issue": issue,
        "subject": subject,
        "preheader": preheader,
        "publication": context.publication,
        "base_url": context.base_url,
        "locale": context.locale,
        "timezone": context.timezone,
        **marker_variables(nonce),
    }
    return IssueSource(
        subject=subject,
        preheader=preheader,
        nonce=nonce,
        mjml=_render_template(env, f"{template}.mjml.j2", variables),
        text=tidy_text(_render_template(env, f"{template}.txt.j2", variables)),
    )


def personalise(rendered: RenderedIssue, values: Mapping[str, str]) -> tuple[str, str]:
    """(html, text) for one recipient: markers filled, values HTML-escaped in the html part."""
    html = fill_markers(rendered.html, rendered.nonce, values, escape_html)
    text = fill_markers(rendered.text, rendered.nonce, values, keep_text)
    return html, text


def issue_subject(issue: Issue, context: RenderContext) -> str:
    """'<title> — <day>' on one line (a newline in a Subject header would start a new header)."""
    day = format_day(issue.created, locale=context.locale, timezone=context.timezone)
    return " ".join(f"{issue.title} — {day}".split())


def issue_preheader(issue: Issue) -> str:
    """The first headlines, as the inbox teaser beside the subject."""
    headlines = [article.title for section in issue.sections for article in section.articles]
    teaser = " · ".join(" ".join(title.split()) for title in headlines[:PREHEADER_HEADLINES])
    return truncate_words(teaser or issue.intro or issue.title, PREHEADER_WORDS)


def _check_locale_and_zone(context: RenderContext) -> None:
    try:
        Locale.parse(context.locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError) as error:
        raise RenderError(f"unknown locale {context.locale!r}") from error
    try:
        ZoneInfo(context.timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise RenderError(f"unknown timezone {context.timezone!r}") from error


def _render_template(env: jinja2.Environment, name: str, variables: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(variables)
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
