"""The SMTP backend: one connection per batch, reused for every message in it."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from email.utils import parseaddr

import aiosmtplib

from digest.deliver.message import MESSAGE_POLICY, to_email_message
from digest.errors import DeliveryError
from digest.models import OutgoingMessage, SendResult


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
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.starttls = starttls
        self.timeout = timeout

    async def send(self, batch: Sequence[OutgoingMessage], *, date: datetime) -> list[SendResult]:
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
            client.close()  # a refused login leaves the connection open
            # Nothing left: every message of the batch can safely be tried again later.
            reason = f"smtp {self.host}:{self.port}: {_first_line(error)}"
            return [SendResult(m.delivery_id, "queued", error=reason) for m in batch]
        if self.username:
            try:
                await client.login(self.username, self.password)
            except (aiosmtplib.SMTPException, OSError) as error:
                client.close()  # a refused login leaves the connection open
                # Wrong credentials will not fix themselves: stop the send, not just the batch.
                raise DeliveryError(
                    f"smtp {self.host}:{self.port}: login refused: {_first_line(error)}"
                ) from error
        results: list[SendResult] = []
        try:
            for index, message in enumerate(batch):
                if not client.is_connected:
                    # The line dropped (or the server said 421): the rest never left.
                    reason = f"smtp {self.host}:{self.port}: connection closed before sending"
                    results.extend(
                        SendResult(m.delivery_id, "queued", error=reason) for m in batch[index:]
                    )
                    break
                results.append(await self._send_one(client, message, date))
        finally:
            # The messages are already accepted or settled; a failed QUIT changes nothing.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        return results

    async def _send_one(
        self, client: aiosmtplib.SMTP, message: OutgoingMessage, date: datetime
    ) -> SendResult:
        try:
            # Written by us, not by aiosmtplib: its own flattening refolds every header at 78
            # columns and so RFC 2047-encodes a long List-Unsubscribe (see MESSAGE_POLICY).
            data = to_email_message(message, date=date).as_bytes(policy=_WIRE_POLICY)
        except DeliveryError as error:
            return SendResult(message.delivery_id, "failed", error=str(error))
        sender = parseaddr(message.sender)[1]
        options = [] if (sender + message.to).isascii() else ["SMTPUTF8"]
        try:
            errors, response = await client.sendmail(
                sender, [message.to], data, mail_options=options
            )
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
        except (aiosmtplib.SMTPException, OSError) as error:
            # The connection broke mid-message: the server may or may not have taken it.
            return SendResult(message.delivery_id, "unknown", error=_first_line(error))
        if errors:
            return SendResult(message.delivery_id, "failed", error=_first_line(str(errors)))
        return SendResult(message.delivery_id, "sent", provider_id=response[:200])


# SMTP wants CRLF line ends; the rest is the message's own policy.
_WIRE_POLICY = MESSAGE_POLICY.clone(linesep="\r\n")


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0][:500] if str(error).strip() else repr(error)
