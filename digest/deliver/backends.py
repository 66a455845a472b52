"""The mail backend port, and choosing a backend from DIGEST_MAIL_URL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from digest.errors import ConfigError
from digest.models import OutgoingMessage, SendResult


class MailBackend(Protocol):
    """Sends a batch; answers one SendResult per message, in any order."""

    async def send(
        self, batch: Sequence[OutgoingMessage], *, date: datetime
    ) -> list[SendResult]: ...


def backend_from_url(url: str) -> MailBackend:
    """file:///abs/outbox · smtp://user:pass@host:port?starttls=1 · smtps://… · sendgrid://"""
    parts = urlsplit(url)
    if parts.scheme == "file":
        from digest.deliver.file import FileBackend

        folder = unquote(parts.netloc + parts.path)
        if not folder:
            raise ConfigError(f"mail url {url!r}: file:// needs a folder, e.g. file:///srv/outbox")
        return FileBackend(Path(folder))
    if parts.scheme in ("smtp", "smtps"):
        from digest.deliver.smtp import SmtpBackend

        if not parts.hostname:
            raise ConfigError(f"mail url {_redact(url)!r}: smtp:// needs a host")
        query = parse_qs(parts.query)
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 25)
            timeout = float(query.get("timeout", ["30"])[0])
            connections = int(query.get("connections", ["1"])[0])
        except ValueError as error:
            # urllib's message quotes the bad part only, never the password.
            raise ConfigError(f"mail url {_redact(url)!r}: {error}") from error
        use_tls = parts.scheme == "smtps"
        starttls = query.get("starttls", ["0"])[0] in ("1", "true", "yes")
        if use_tls and starttls:
            raise ConfigError(
                f"mail url {_redact(url)!r}: smtps:// is TLS from the start; "
                "drop starttls=1 or use smtp://"
            )
        return SmtpBackend(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            use_tls=use_tls,
            starttls=starttls,
            timeout=timeout,
            connections=connections,
        )
    if parts.scheme == "sendgrid":
        from digest.deliver.sendgrid import backend_from_sendgrid_url

        return backend_from_sendgrid_url(url)
    raise ConfigError(f"mail url {_redact(url)!r}: scheme must be file, smtp, smtps or sendgrid")


def _redact(url: str) -> str:
    """Never echo a password back in an error."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
