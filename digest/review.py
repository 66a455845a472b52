"""Telling a digest's editors that an issue waits for their approval, with a link to it.

Editors are addresses in digest.toml, not subscribers: the email (templates/review.*.j2) is
staff mail in English, without an unsubscribe link, sent through the same mail backend.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jinja2

from digest.config import DigestConfig, Settings
from digest.deliver.backends import MailBackend
from digest.deliver.message import sender_domain
from digest.errors import DeliveryError
from digest.models import Issue, OutgoingMessage
from digest.render import RenderContext, RenderedIssue, personalise, template_environment
from digest.render.issue import template_errors, template_variables
from digest.render.markers import marker_nonce, marker_variables
from digest.render.mjml import compile_mjml
from digest.render.notice import NoticeSource
from digest.render.text import tidy_text

log = logging.getLogger(__name__)

# The editor's page of one issue (digest/web serves it under `digest serve`).
REVIEW_PATH = "/editor/issues/{issue_id}"
TEMPLATE = "review"


def review_url(base_url: str, issue_id: int) -> str:
    return base_url + REVIEW_PATH.format(issue_id=issue_id)


def review_source(
    *, env: jinja2.Environment, context: RenderContext, variables: Mapping[str, Any]
) -> NoticeSource:
    """Run review.mjml.j2 and review.txt.j2 only: subject, preheader, MJML and text."""
    nonce = marker_nonce(TEMPLATE, context, sorted(variables.items(), key=str))
    base = {
        **template_variables(context, subject="", preheader=""),
        **variables,
        **marker_variables(nonce),
    }
    mjml_name, text_name = f"{TEMPLATE}.mjml.j2", f"{TEMPLATE}.txt.j2"
    with template_errors(mjml_name):
        module = env.get_template(mjml_name).make_module(base)
        subject = " ".join(str(getattr(module, "subject", "")).split())
        preheader = " ".join(str(getattr(module, "preheader", "")).split())
        mjml = str(module)
    with template_errors(text_name):
        text = tidy_text(env.get_template(text_name).render({**base, "subject": subject}))
    return NoticeSource(subject=subject, preheader=preheader, nonce=nonce, mjml=mjml, text=text)


def render_review(
    settings: Settings, digest: DigestConfig, issue: Issue, reason: str
) -> RenderedIssue:
    """The review email for `issue`, the editor's address still a marker."""
    assert issue.id is not None
    context = RenderContext(
        publication=settings.file.name,
        base_url=settings.base_url,
        locale="en",
        timezone=digest.timezone,
        logo_url=settings.file.logo,
        postal_address=settings.file.postal_address,
    )
    variables = {
        "list_title": digest.title,
        "issue_title": issue.title,
        "issue_number": issue.number,
        "period_key": issue.period_key,
        "item_count": issue.article_count,
        "sections": [section.label for section in issue.sections],
        "review_url": review_url(settings.base_url, issue.id),
        "reason": reason,
    }
    env = template_environment(settings.templates_dir, locale="en")
    source = review_source(env=env, context=context, variables=variables)
    compiled = compile_mjml(source.mjml, origin=f"{TEMPLATE}.mjml.j2")
    return RenderedIssue(
        subject=source.subject,
        preheader=source.preheader,
        html=compiled.html,
        text=source.text,
        size_bytes=len(compiled.html.encode("utf-8")),
        nonce=source.nonce,
        warnings=compiled.warnings,
    )


async def tell_editors(
    settings: Settings,
    digest: DigestConfig,
    issue: Issue,
    backend: MailBackend,
    *,
    reason: str,
    now: datetime,
) -> int:
    """Email each of the digest's editors the review link; the number sent (0: no editors).

    A refused message is logged, not raised: the issue waits either way, and the run goes on.
    """
    if not digest.editors:
        log.info(
            "issue=%s digest=%s waits for approval (%s); no editors set",
            issue.id,
            digest.name,
            reason,
        )
        return 0
    rendered = render_review(settings, digest, issue, reason)
    sender = settings.file.mail.sender
    domain = sender_domain(sender)
    batch = []
    for address in digest.editors:
        html, text = personalise(rendered, {"email": address})
        headers = {"Message-ID": f"<review.{issue.id}.{secrets.token_hex(8)}@{domain}>"}
        batch.append(
            OutgoingMessage(
                delivery_id=f"review-{issue.id}-{secrets.token_hex(4)}",
                to=address,
                sender=sender,
                subject=rendered.subject,
                html=html,
                text=text,
                headers=headers,
            )
        )
    try:
        results = await backend.send(batch, date=now)
    except DeliveryError as error:
        log.warning("issue=%s: editors not told: %s", issue.id, error)
        return 0
    sent = sum(result.state == "sent" for result in results)
    if sent < len(batch):
        refused = next(result for result in results if result.state != "sent")
        log.warning("issue=%s: %d editors not told: %s", issue.id, len(batch) - sent, refused.error)
    log.info(
        "issue=%s digest=%s waits for approval (%s); told %d editors",
        issue.id,
        digest.name,
        reason,
        sent,
    )
    return sent
