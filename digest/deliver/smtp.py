"""The SMTP backend: a small pool of connections per batch, each reused for many messages."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path

import aiosmtplib

from digest.deliver.message import WIRE_POLICY, sender_domain, to_email_message
from digest.deliver.mime import FastEncoder
from digest.errors import ConfigError, DeliveryError
from digest.models import OutgoingMessage, SendResult

# RFC 6376 §5.4: what a receiver must see unchanged for the signature to hold.
DKIM_HEADERS = (
    b"From",
    b"Subject",
    b"Date",
    b"To",
    b"Message-ID",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


@dataclass(frozen=True, slots=True)
class DkimSigner:
    """rsa-sha256, relaxed/relaxed signatures with one key under one selector."""

    selector: str
    private_key: bytes  # PEM

    def signature(self, data: bytes, domain: str) -> bytes:
        """The DKIM-Signature header (CRLF-terminated) for these message bytes."""
        import dkim

        return dkim.sign(
            data,
            self.selector.encode("ascii"),
            domain.encode("ascii"),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(DKIM_HEADERS),
            linesep=b"\r\n",
        )


def dkim_from_environment(environ: Mapping[str, str]) -> DkimSigner | None:
    """DIGEST_DKIM_KEY_FILE + DIGEST_DKIM_SELECTOR, both or neither; the domain is the sender's."""
    key_file = environ.get("DIGEST_DKIM_KEY_FILE", "")
    selector = environ.get("DIGEST_DKIM_SELECTOR", "")
    if not key_file and not selector:
        return None
    if not key_file or not selector:
        raise ConfigError("DKIM signing needs both DIGEST_DKIM_KEY_FILE and DIGEST_DKIM_SELECTOR")
    if not selector.isascii() or not selector.replace("-", "").replace(".", "").isalnum():
        raise ConfigError(f"DIGEST_DKIM_SELECTOR {selector!r} is not a DNS label like 'mail2025'")
    try:
        key = Path(key_file).read_bytes()
    except OSError as error:
        raise ConfigError(f"DIGEST_DKIM_KEY_FILE {key_file!r}: {error.strerror}") from error
    if b"PRIVATE KEY-----" not in key:
        raise ConfigError(f"DIGEST_DKIM_KEY_FILE {key_file!r} is not a PEM private key")
    return DkimSigner(selector, key)


_FROM_ENVIRONMENT = object()


class SmtpBackend:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str = "",
        password: str = "",
        use_tls: bool = False,
        starttls: bool = False,
        timeout: float = 30.0,
        connections: int = 1,
        dkim: DkimSigner | None | object = _FROM_ENVIRONMENT,
    ) -> None:
        if connections < 1:
            raise ConfigError(f"smtp connections={connections}: must be at least 1")
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.starttls = starttls
        self.timeout = timeout
        self.connections = connections
        self.dkim: DkimSigner | None = (
            dkim_from_environment(os.environ) if dkim is _FROM_ENVIRONMENT else dkim  # type: ignore[assignment]
        )
        self.encoder = FastEncoder()

    async def send(self, batch: Sequence[OutgoingMessage], *, date: datetime) -> list[SendResult]:
        results: list[SendResult | None] = [None] * len(batch)
        # Each connection takes the next message when it is free: one slow reply holds up
        # only its own connection.
        pending = iter(enumerate(batch))
        count = min(self.connections, len(batch)) or 1
        outcomes = await asyncio.gather(
            *(self._connection(pending, batch, results, date) for _ in range(count)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # a refused login: stop the send
        # A message no connection took never left: it can safely be tried again later.
        reasons = [o for o in outcomes if isinstance(o, str)]
        reason = reasons[0] if reasons else f"smtp {self.host}:{self.port}: not sent"
        return [
            result or SendResult(message.delivery_id, "queued", error=reason)
            for result, message in zip(results, batch, strict=True)
        ]

    async def _connection(
        self,
        pending: Iterator[tuple[int, OutgoingMessage]],
        batch: Sequence[OutgoingMessage],
        results: list[SendResult | None],
        date: datetime,
    ) -> str | None:
        """Sends messages from `pending` over one connection; returns why it stopped early."""
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.use_tls,
            start_tls=self.starttls,
            timeout=self.timeout,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as error:
            client.close()
            return f"smtp {self.host}:{self.port}: {_first_line(error)}"
        if self.username:
            try:
                await client.login(self.username, self.password)
            except (aiosmtplib.SMTPException, OSError) as error:
                client.close()  # a refused login leaves the connection open
                # Wrong credentials will not fix themselves: stop the send, not just the batch.
                raise DeliveryError(
                    f"smtp {self.host}:{self.port}: login refused: {_first_line(error)}"
                ) from error
        try:
            while client.is_connected:
                taken = next(pending, None)
                if taken is None:
                    return None
                index, message = taken
                results[index] = await self._send_one(client, message, date)
            # The line dropped (or the server said 421): what this connection did not take
            # goes to the others, or stays queued.
            return f"smtp {self.host}:{self.port}: connection closed before sending"
        finally:
            # The messages are already accepted or settled; a failed QUIT changes nothing.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()

    def message_bytes(self, message: OutgoingMessage, date: datetime) -> tuple[bytes, bool]:
        """The wire form (DKIM-signed when configured), and whether it came from FastEncoder
        (CRLF throughout); raises DeliveryError for a message that cannot be built."""
        data = self.encoder.encode(message, date=date)
        fast = data is not None
        if data is None:
            # Written by us, not by aiosmtplib: its own flattening refolds every header at 78
            # columns and so RFC 2047-encodes a long List-Unsubscribe (see MESSAGE_POLICY).
            data = to_email_message(message, date=date).as_bytes(policy=WIRE_POLICY)
        if self.dkim is not None:
            data = self.dkim.signature(data, sender_domain(message.sender)) + data
        return data, fast

    async def _send_one(
        self, client: aiosmtplib.SMTP, message: OutgoingMessage, date: datetime
    ) -> SendResult:
        try:
            data, fast = self.message_bytes(message, date)
        except DeliveryError as error:
            return SendResult(message.delivery_id, "failed", error=str(error))
        sender = envelope_sender(message.sender)
        ascii_envelope = sender.isascii() and message.to.isascii()
        try:
            if fast and ascii_envelope:
                response = await self._transaction(client, sender, message.to, data)
            else:
                options = [] if ascii_envelope else ["SMTPUTF8"]
                errors, response = await client.sendmail(
                    sender, [message.to], data, mail_options=options
                )
                if errors:
                    return SendResult(message.delivery_id, "failed", error=_first_line(errors))
        except aiosmtplib.SMTPRecipientsRefused as error:
            # One recipient per message: its own code says whether to try again (4xx) or not.
            codes = [refused.code for refused in error.recipients]
            state = "queued" if codes and all(400 <= c < 500 for c in codes) else "failed"
            return SendResult(message.delivery_id, state, error=_first_line(error))
        except aiosmtplib.SMTPResponseException as error:
            state = "queued" if 400 <= error.code < 500 else "failed"
            return SendResult(message.delivery_id, state, error=_first_line(error))
        except (aiosmtplib.SMTPNotSupported, ValueError) as error:
            # Refused before anything was sent (an address this server cannot take).
            return SendResult(message.delivery_id, "failed", error=_first_line(error))
        except _LostBeforeData as error:
            client.close()
            return SendResult(message.delivery_id, "queued", error=_first_line(error.__cause__))
        except (aiosmtplib.SMTPException, OSError) as error:
            # The connection broke mid-message: the server may or may not have taken it.
            client.close()  # after a timeout the replies would no longer match the commands
            return SendResult(message.delivery_id, "unknown", error=_first_line(error))
        return SendResult(message.delivery_id, "sent", provider_id=response[:200])

    async def _transaction(
        self, client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes
    ) -> str:
        """MAIL, RCPT, DATA for bytes that are CRLF throughout; returns the server's answer.

        aiosmtplib's own DATA rewrites every line ending with a regular expression, which
        costs more than building the message; these bytes need only dot-stuffing. A line lost
        before the message went out raises _LostBeforeData: the server cannot have it.
        """
        try:
            await client.mail(sender)
            try:
                await client.rcpt(recipient)
            except aiosmtplib.SMTPResponseException:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.rset()  # end the transaction, as sendmail does
                raise
            start = await client.execute_command(b"DATA")
        except aiosmtplib.SMTPResponseException:
            raise
        except (aiosmtplib.SMTPException, OSError) as error:
            raise _LostBeforeData from error
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost before the message")
        # RFC 5321 §4.5.2: a line starting with "." gets another; the message starts with a
        # header name, never a dot.
        protocol.write(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        response = await protocol.read_response(timeout=self.timeout)
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response.message


class _LostBeforeData(Exception):
    """The line broke (or timed out) before any of the message was sent: safe to send again."""


@functools.lru_cache(maxsize=64)
def envelope_sender(sender: str) -> str:
    """'Name <me@example.org>' → 'me@example.org' (parsed once per sender)."""
    return parseaddr(sender)[1]


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0][:500] if str(error).strip() else repr(error)
