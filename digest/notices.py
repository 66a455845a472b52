"""Emails to one person about their subscription: confirm, welcome, preferences changed.

The web pages and `digest subscribers import --double-opt-in` send them through
`NoticeMailer`. Each notice is rendered once per (list, topics, cadence) and personalised per
person, like an issue; the links in it are signed tokens under the public base URL.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from digest.config import DigestConfig, Settings
from digest.deliver.backends import MailBackend, backend_from_url
from digest.deliver.message import list_id, sender_domain, unsubscribe_headers, unsubscribe_mailto
from digest.errors import DeliveryError
from digest.models import OutgoingMessage
from digest.render import RenderContext, RenderedIssue, personalise, template_environment
from digest.render.notice import render_notice
from subscribers.tokens import (
    CONFIRM_MAX_AGE,
    make_confirm_token,
    make_preferences_token,
    make_unsubscribe_token,
)

# The public pages these links open (digest/web/app.py serves them).
CONFIRM_PATH = "/confirm/{token}"
PREFERENCES_PATH = "/p/{token}"
UNSUBSCRIBE_PATH = "/u/{token}"
# Notices about an existing subscription offer the way out in their headers too.
_WITH_UNSUBSCRIBE = frozenset({"welcome", "preferences-changed"})
# Confirmations from an import go out in batches of this many messages.
SEND_BATCH = 100


@dataclass(frozen=True, slots=True)
class NoticeRecipient:
    """Whom a notice goes to, and what they chose (empty `topics`: every topic)."""

    subscriber_id: int
    email: str
    list_name: str
    name: str = ""
    topics: tuple[str, ...] = ()
    cadence: str = "weekly"


class NoticeMailer:
    """Renders and sends notices for one configuration through one mail backend (None: only
    build messages, as previews do)."""

    def __init__(self, settings: Settings, backend: MailBackend | None = None) -> None:
        self.settings = settings
        self.backend = backend
        self.secret = settings.require_secret_key()
        self.sender = settings.file.mail.sender
        self.domain = sender_domain(self.sender)
        self._rendered: dict[tuple[object, ...], RenderedIssue] = {}

    async def send(
        self,
        notice: str,
        *,
        subscriber_id: int,
        email: str,
        name: str,
        list_name: str,
        topics: tuple[str, ...],
        cadence: str,
        now: datetime,
    ) -> None:
        """Send one notice now; DeliveryError when the backend did not take it."""
        recipient = NoticeRecipient(subscriber_id, email, list_name, name, topics, cadence)
        await self.send_many(notice, [recipient], now=now)

    async def send_many(
        self, notice: str, recipients: Iterable[NoticeRecipient], *, now: datetime
    ) -> int:
        """Send `notice` to each recipient in batches; the number the backend accepted.

        Raises DeliveryError naming the first address the backend refused.
        """
        sent = 0
        batch: list[OutgoingMessage] = []
        for recipient in recipients:
            batch.append(self.message(notice, recipient, now=now))
            if len(batch) == SEND_BATCH:
                sent += await self._send_batch(batch, now)
                batch = []
        if batch:
            sent += await self._send_batch(batch, now)
        return sent

    def message(self, notice: str, recipient: NoticeRecipient, *, now: datetime) -> OutgoingMessage:
        """The personalised notice for one recipient, with its headers."""
        rendered = self.rendered(notice, recipient)
        links = self.links(recipient, now=now)
        html, text = personalise(
            rendered, {"email": recipient.email, "name": recipient.name, **links}
        )
        headers = {"Message-ID": f"<notice.{notice}.{secrets.token_hex(8)}@{self.domain}>"}
        digest = self._digest_of(recipient.list_name)
        title = digest.title if digest else recipient.list_name
        if notice in _WITH_UNSUBSCRIBE:
            headers["List-Id"] = list_id(title, recipient.list_name, self.domain)
            token = links["unsubscribe_url"].rsplit("/", 1)[1]
            headers.update(
                unsubscribe_headers(
                    links["unsubscribe_url"], unsubscribe_mailto(self.sender, token)
                )
            )
        if self.settings.file.mail.reply_to:
            headers["Reply-To"] = self.settings.file.mail.reply_to
        return OutgoingMessage(
            delivery_id=f"{notice}-{recipient.subscriber_id}-{secrets.token_hex(4)}",
            to=recipient.email,
            sender=self.sender,
            subject=rendered.subject,
            html=html,
            text=text,
            headers=headers,
        )

    def links(self, recipient: NoticeRecipient, *, now: datetime) -> dict[str, str]:
        """The signed confirm, preferences and unsubscribe links for this recipient."""
        base = self.settings.base_url
        who = (self.secret, recipient.subscriber_id, recipient.list_name)
        confirm = make_confirm_token(*who, recipient.email, now=now)
        preferences = make_preferences_token(*who, recipient.email)
        unsubscribe = make_unsubscribe_token(*who)
        return {
            "confirm_url": base + CONFIRM_PATH.format(token=confirm),
            "preferences_url": base + PREFERENCES_PATH.format(token=preferences),
            "unsubscribe_url": base + UNSUBSCRIBE_PATH.format(token=unsubscribe),
        }

    def rendered(self, notice: str, recipient: NoticeRecipient) -> RenderedIssue:
        """The notice for this recipient's list, topics and cadence, before personalising."""
        key = (notice, recipient.list_name, recipient.topics, recipient.cadence)
        if key not in self._rendered:
            digest = self._digest_of(recipient.list_name)
            locale = digest.locale if digest else "en"
            self._rendered[key] = render_notice(
                notice,
                env=template_environment(self.settings.templates_dir, locale=locale),
                context=RenderContext(
                    publication=self.settings.file.name,
                    base_url=self.settings.base_url,
                    locale=locale,
                    timezone=digest.timezone if digest else "UTC",
                    logo_url=self.settings.file.logo,
                    postal_address=self.settings.file.postal_address,
                    show_preferences=True,
                ),
                variables={
                    "list_title": digest.title if digest else recipient.list_name,
                    "topics": recipient.topics,
                    "cadence": recipient.cadence,
                    "expires_hours": int(CONFIRM_MAX_AGE.total_seconds() // 3600),
                },
            )
        return self._rendered[key]

    def _digest_of(self, list_name: str) -> DigestConfig | None:
        """The first digest sent to this list: its title and language speak for the list."""
        return next((d for d in self.settings.digests if d.list_name == list_name), None)

    async def _send_batch(self, batch: Sequence[OutgoingMessage], now: datetime) -> int:
        if self.backend is None:
            raise DeliveryError("notices: no mail backend to send with")
        results = await self.backend.send(batch, date=now)
        refused = [result for result in results if result.state != "sent"]
        if refused:
            first = next(m.to for m in batch if m.delivery_id == refused[0].delivery_id)
            raise DeliveryError(
                f"{len(refused)} of {len(batch)} notices not sent; {first}: {refused[0].error}"
            )
        return len(results)


def send_confirmations(
    settings: Settings, pending: Sequence[NoticeRecipient], *, now: datetime
) -> int:
    """Send the confirm notice to each pending subscriber (a CSV import's --double-opt-in)."""
    if not pending:
        return 0
    mailer = NoticeMailer(settings, backend_from_url(settings.mail_url))
    return asyncio.run(mailer.send_many("confirm", pending, now=now))
