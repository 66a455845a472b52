"""Transactional emails (confirm, welcome, preferences changed): one render, many recipients.

A notice template sets its own `subject` and `preheader` at the top (`{% set subject = … %}`)
and writes per-person values as markers, like the digest: rendered once per list and language,
then filled per recipient with `personalise`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2

from digest.errors import RenderError
from digest.render.filters import one_line
from digest.render.issue import (
    RenderContext,
    RenderedIssue,
    require_field,
    template_errors,
    template_variables,
)
from digest.render.markers import marker_nonce, marker_variables
from digest.render.mjml import compile_mjml
from digest.render.text import tidy_text

NOTICES = ("confirm", "welcome", "preferences-changed")
# The link a notice cannot go without: confirming is its point, or leaving the list.
REQUIRED_LINK = {
    "confirm": "confirm_url",
    "welcome": "unsubscribe_url",
    "preferences-changed": "unsubscribe_url",
}


@dataclass(frozen=True, slots=True)
class NoticeSource:
    """A notice's Jinja output before MJML: what it says in its head, its MJML and its text."""

    subject: str
    preheader: str
    nonce: str
    mjml: str
    text: str


def render_notice(
    notice: str,
    *,
    env: jinja2.Environment,
    context: RenderContext,
    variables: Mapping[str, Any] | None = None,
) -> RenderedIssue:
    """Render `<notice>.mjml.j2` and `<notice>.txt.j2` with markers for the personal fields.

    `variables` adds what the notice is about (the list's title, the chosen topics, …).
    """
    source = notice_source(notice, env=env, context=context, variables=variables)
    mjml_name = f"{notice}.mjml.j2"
    compiled = compile_mjml(source.mjml, origin=mjml_name)
    rendered = RenderedIssue(
        subject=source.subject,
        preheader=source.preheader,
        html=compiled.html,
        text=source.text,
        size_bytes=len(compiled.html.encode("utf-8")),
        nonce=source.nonce,
        warnings=compiled.warnings,
    )
    require_field(rendered, REQUIRED_LINK[notice], notice, why=f"a {notice} email needs it")
    return rendered


def notice_source(
    notice: str,
    *,
    env: jinja2.Environment,
    context: RenderContext,
    variables: Mapping[str, Any] | None = None,
) -> NoticeSource:
    """Run a notice's Jinja templates only: subject, preheader, MJML and text, markers in them."""
    if notice not in NOTICES:
        raise RenderError(f"unknown notice {notice!r}; known: {', '.join(NOTICES)}")
    nonce = marker_nonce(notice, context, sorted((variables or {}).items(), key=str))
    base = {**template_variables(context, subject="", preheader=""), **(variables or {})}
    base.update(marker_variables(nonce))
    mjml_name, text_name = f"{notice}.mjml.j2", f"{notice}.txt.j2"
    with template_errors(mjml_name):
        module = env.get_template(mjml_name).make_module(base)
        subject = one_line(str(getattr(module, "subject", "")))
        preheader = one_line(str(getattr(module, "preheader", "")))
        mjml = str(module)
    if not subject:
        raise RenderError(f"{mjml_name}: sets no subject ({{% set subject = … %}} at the top)")
    with template_errors(text_name):
        text = tidy_text(env.get_template(text_name).render({**base, "subject": subject}))
    return NoticeSource(subject=subject, preheader=preheader, nonce=nonce, mjml=mjml, text=text)
