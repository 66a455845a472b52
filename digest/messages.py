"""Each reader's message of an issue: rendered once per topic variant, then given the reader's
own links and address, and the headers receivers require."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from digest.assemble import (
    issue_for_topics,
    variant_key,
)
from digest.config import DigestConfig, Settings
from digest.deliver.message import (
    list_id,
    message_id,
    sender_domain,
    unsubscribe_headers,
    unsubscribe_mailto,
)
from digest.errors import DigestError
from digest.models import Issue, OutgoingMessage, SharedBody
from digest.notices import PREFERENCES_PATH, UNSUBSCRIBE_PATH
from digest.render.environment import template_environment
from digest.render.issue import (
    RenderContext,
    RenderedIssue,
    render_issue,
)
from digest.render.markers import PERSONAL_FIELDS
from digest.store import OutboxRow
from subscribers.tokens import make_preferences_token, make_unsubscribe_token

log = logging.getLogger(__name__)


def web_version_url(base_url: str, issue_id: int) -> str:
    """Where `digest serve` shows an issue as a web page ("view in browser")."""
    return f"{base_url}/issues/{issue_id}"


def render_context(
    settings: Settings, digest: DigestConfig, issue_id: int | None = None
) -> RenderContext:
    """What the templates know about the publication, and the web address of issue `issue_id`."""
    return RenderContext(
        publication=settings.file.name,
        base_url=settings.base_url,
        locale=digest.locale,
        timezone=digest.timezone,
        logo_url=settings.file.logo,
        postal_address=settings.file.postal_address,
        web_url=web_version_url(settings.base_url, issue_id) if issue_id is not None else "",
        images=digest.images,
        show_preferences=True,  # `digest serve` answers the preferences links
    )


class MessageFactory:
    """Builds each recipient's message; renders once per topic variant, then personalises."""

    def __init__(self, settings: Settings, issue: Issue) -> None:
        assert issue.id is not None
        self.settings = settings
        self.issue = issue
        self.digest = settings.digest(issue.digest)
        self.sender = settings.file.mail.sender
        self.domain = sender_domain(self.sender)
        self.secret = settings.require_secret_key()
        self.env = template_environment(settings.templates_dir, locale=self.digest.locale)
        self.context = render_context(settings, self.digest, issue.id)
        self.list_id = list_id(self.digest.title, self.digest.list_name, self.domain)
        self.reply_to = settings.file.mail.reply_to
        self._variants: dict[tuple[str, ...], RenderedIssue] = {}
        self._shared: dict[tuple[str, ...], tuple[RenderedIssue, SharedBody] | None] = {}

    def variant(self, topics: Sequence[str]) -> tuple[Issue, RenderedIssue | None]:
        """The issue as this topic choice sees it, rendered (None when it would be empty)."""
        key = variant_key(topics)
        issue = issue_for_topics(self.issue, key)
        if issue.article_count == 0:
            return issue, None
        if key not in self._variants:
            rendered = render_issue(
                issue, template=self.digest.template, env=self.env, context=self.context
            )
            for warning in rendered.warnings:  # e.g. over the size Gmail clips at
                topics_shown = ", ".join(key) or "all topics"
                log.warning("issue %s (%s): %s", self.issue.id, topics_shown, warning)
            self._variants[key] = rendered
        return issue, self._variants[key]

    def shared_body(self, topics: Sequence[str]) -> tuple[RenderedIssue, SharedBody] | None:
        """The variant for this exact topic list and its shared body, looked up once per list."""
        choice = tuple(topics)
        if choice not in self._shared:
            _issue, rendered = self.variant(choice)
            self._shared[choice] = (
                None
                if rendered is None
                else (rendered, SharedBody(rendered.nonce, rendered.html, rendered.text))
            )
        return self._shared[choice]

    def personal_values(self, subscriber_id: int, email: str) -> dict[str, str]:
        list_name = self.digest.list_name
        token = make_unsubscribe_token(self.secret, subscriber_id, list_name)
        preferences = make_preferences_token(self.secret, subscriber_id, list_name, email)
        base = self.settings.base_url
        return {
            "unsubscribe_url": base + UNSUBSCRIBE_PATH.format(token=token),
            "preferences_url": base + PREFERENCES_PATH.format(token=preferences),
            "email": email,
            "name": "",
            "token": token,
        }

    def __call__(self, row: OutboxRow) -> OutgoingMessage:
        variant = self.shared_body(row.topics)
        if variant is None:
            raise DigestError(f"issue {self.issue.id}: nothing to send to {row.email}")
        rendered, shared = variant
        values = self.personal_values(row.subscriber_id, row.email)
        headers = {
            "Message-ID": message_id(self.domain, self.issue.id or 0, row.subscriber_id),
            "List-Id": self.list_id,
            **unsubscribe_headers(
                values["unsubscribe_url"], unsubscribe_mailto(self.sender, values["token"])
            ),
        }
        if self.reply_to:
            headers["Reply-To"] = self.reply_to
        # The personalised html and text are made only if the backend reads them.
        return OutgoingMessage(
            delivery_id=str(row.id),
            to=row.email,
            sender=self.sender,
            subject=rendered.subject,
            headers=headers,
            shared=shared,
            personal={field: values[field] for field in PERSONAL_FIELDS if field in values},
        )
