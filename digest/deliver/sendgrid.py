"""The SendGrid backend: sends the planned v3 mail send requests and reads SendGrid's answers.

digest.deliver.sendgrid_requests plans the requests (one body per variant, per-reader
substitutions); this module posts them with the `sendgrid` client, `connections` at a time,
and turns each answer into the state of every message it carried.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import re
import urllib.error
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import python_http_client.exceptions
from sendgrid import SendGridAPIClient

from digest.deliver.sendgrid_requests import MAX_REQUEST_BYTES, Layout, MailRequest, plan_requests
from digest.errors import ConfigError, DeliveryError
from digest.models import DeliveryState, OutgoingMessage, SendResult

log = logging.getLogger(__name__)

# python_http_client logs each request's headers (the API key) and body at DEBUG.
logging.getLogger("python_http_client").setLevel(logging.INFO)

API_HOST = "https://api.sendgrid.com"
_PERSONALIZATION_FIELD = re.compile(r"personalizations\.(\d+)(?:\.|$)")


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request came to, as the state of each message it carried."""

    state: DeliveryState
    error: str = ""
    message_id: str = ""
    retry_after: float = 0.0
    errors: tuple[tuple[str, str], ...] = ()  # SendGrid's (field, message) pairs
    refused_account: bool = False  # the key, sender or host is wrong: no request can pass


class SendGridBackend:
    """Sends each batch as few v3 mail send requests, `connections` of them at a time."""

    # Outbox rows claimed per batch: one request carries up to 1000 readers of a variant.
    batch_size = 1000

    def __init__(
        self,
        *,
        api_key: str,
        host: str = API_HOST,
        timeout: float = 30.0,
        connections: int = 4,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.host = host.rstrip("/")
        self.timeout = timeout
        self.connections = connections
        self.max_request_bytes = max_request_bytes
        self._client = SendGridAPIClient(api_key=api_key, host=self.host)
        self._layouts: dict[str, Layout] = {}

    async def send(self, batch: Sequence[OutgoingMessage], *, date: datetime) -> list[SendResult]:
        if len(self._layouts) > 64:  # a long-lived backend sends many issues
            self._layouts.clear()
        requests = plan_requests(batch, max_bytes=self.max_request_bytes, layouts=self._layouts)
        limit = asyncio.Semaphore(self.connections)

        async def deliver(request: MailRequest) -> tuple[list[SendResult], str]:
            async with limit:
                return await self._deliver(request, date)

        outcomes = await asyncio.gather(*(deliver(request) for request in requests))
        results = [result for settled, _refusal in outcomes for result in settled]
        refusal = next((refusal for _settled, refusal in outcomes if refusal), "")
        if refusal and all(result.state == "queued" for result in results):
            # Nothing was taken: stop the send (the outbox gives the rows back), as SMTP does
            # for a refused login, rather than fail every reader for the operator's mistake.
            raise DeliveryError(refusal)
        return results

    async def _deliver(self, request: MailRequest, date: datetime) -> tuple[list[SendResult], str]:
        """Send one request; when SendGrid names bad personalizations, fail those and send the
        rest again (a 400 means nothing in the request was taken)."""
        failed: list[SendResult] = []
        while True:
            answer = await asyncio.to_thread(self._post, request.body, date)
            log.debug(
                "sendgrid personalizations=%d state=%s %s",
                len(request.delivery_ids),
                answer.state,
                answer.error,
            )
            rejected = _rejected_personalizations(answer, len(request.delivery_ids))
            if not rejected or len(rejected) == len(request.delivery_ids):
                refusal = answer.error if answer.refused_account else ""
                return failed + _settle(request, answer), refusal
            failed += [
                SendResult(request.delivery_ids[i], "failed", error=error)
                for i, error in rejected.items()
            ]
            request = request.without(list(rejected))

    def _post(self, body: dict[str, object], date: datetime) -> Answer:
        where = f"sendgrid {self.host}"
        try:
            response = self._client.client.mail.send.post(request_body=body, timeout=self.timeout)
        except python_http_client.exceptions.HTTPError as error:
            return _answer_for_refusal(error.status_code, error.body, error.headers, date)
        except urllib.error.URLError as error:
            # urllib raises URLError only before the whole request was written: nothing taken.
            return Answer("queued", error=f"{where}: {error.reason}")
        except (OSError, http.client.HTTPException) as error:
            # The request went out and no answer came: SendGrid may have taken it.
            reason = str(error) or type(error).__name__
            return Answer("unknown", error=f"{where}: no answer after sending: {reason}")
        message_id = response.headers.get("X-Message-Id", "") if response.headers else ""
        return Answer("sent", message_id=message_id)


def _answer_for_refusal(
    status: int, body: bytes | str | None, headers: Mapping[str, str] | None, date: datetime
) -> Answer:
    errors = _error_pairs(body)
    said = "; ".join(message for _field, message in errors) or http.client.responses.get(
        status, "error"
    )
    error = f"sendgrid {status}: {said}"[:500]
    if status == 429 or (status >= 500 and status not in (502, 504)):
        wait = _retry_after(headers or {}, date)
        if wait:
            error += f"; Retry-After: {wait:.0f}"
        return Answer("queued", error=error, retry_after=wait)
    if status in (502, 504):
        # A gateway gave up waiting; SendGrid behind it may have taken the request.
        return Answer("unknown", error=error)
    if status in (401, 403, 404, 405):
        return Answer("queued", error=error, refused_account=True)
    return Answer("failed", error=error, errors=errors)


def _error_pairs(body: bytes | str | None) -> tuple[tuple[str, str], ...]:
    """SendGrid's `{"errors": [{"field", "message"}]}`; nothing when the body is not that."""
    try:
        errors = json.loads(body or b"")["errors"]
        return tuple((str(e.get("field") or ""), str(e.get("message") or "")) for e in errors)
    except (ValueError, TypeError, KeyError, AttributeError):
        return ()


def _rejected_personalizations(answer: Answer, count: int) -> dict[int, str]:
    """Positions a 400 blames, with their messages; empty when it blames the whole request."""
    if answer.state != "failed" or count < 2 or not answer.errors:
        return {}
    rejected: dict[int, str] = {}
    for field, message in answer.errors:
        found = _PERSONALIZATION_FIELD.match(field)
        if found is None or int(found.group(1)) >= count:
            return {}
        rejected[int(found.group(1))] = f"sendgrid 400: {message}"[:500]
    return rejected


def _retry_after(headers: Mapping[str, str], date: datetime) -> float:
    """Seconds to wait from Retry-After (seconds or a date) or X-RateLimit-Reset (epoch)."""
    value = (headers.get("Retry-After") or "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, (parsedate_to_datetime(value) - date).total_seconds())
            except (TypeError, ValueError):
                return 0.0
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    try:
        return max(0.0, float(reset) - date.timestamp()) if reset else 0.0
    except ValueError:
        return 0.0


def _settle(request: MailRequest, answer: Answer) -> list[SendResult]:
    return [
        SendResult(
            delivery_id,
            answer.state,
            provider_id=answer.message_id,
            error=answer.error,
            retry_after=answer.retry_after,
        )
        for delivery_id in request.delivery_ids
    ]


# --- configuration -----------------------------------------------------------------------

_OPTIONS = ("host", "tls", "timeout", "connections")


def backend_from_sendgrid_url(
    url: str, environ: Mapping[str, str] | None = None
) -> SendGridBackend:
    """sendgrid:// (SendGrid's API) · sendgrid://HOST[:PORT][?tls=0] · sendgrid://?host=URL;
    options timeout=SECONDS and connections=N. The key comes from SENDGRID_API_KEY."""
    environ = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError(
            "mail url sendgrid://: put the API key in SENDGRID_API_KEY, not in the url"
        )
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    if unknown := sorted(set(query) - set(_OPTIONS)):
        raise ConfigError(
            f"mail url {url!r}: unknown option {unknown[0]!r}; known: {', '.join(_OPTIONS)}"
        )
    try:
        host = _api_host(parts.netloc, query)
        timeout = float(query.get("timeout", "30"))
        connections = int(query.get("connections", "4"))
    except ValueError as error:
        raise ConfigError(f"mail url {url!r}: {error}") from error
    if timeout <= 0 or connections < 1:
        raise ConfigError(f"mail url {url!r}: timeout must be > 0 and connections ≥ 1")
    api_key = environ.get("SENDGRID_API_KEY", "").strip()
    if not api_key:
        raise ConfigError(
            "mail url sendgrid://: the SendGrid API key is not available; set SENDGRID_API_KEY"
        )
    return SendGridBackend(api_key=api_key, host=host, timeout=timeout, connections=connections)


def _api_host(netloc: str, query: Mapping[str, str]) -> str:
    if "host" in query:
        if netloc:
            raise ValueError("give the host either after sendgrid:// or as host=, not both")
        given = urlsplit(query["host"])
        if given.scheme not in ("http", "https") or not given.netloc:
            raise ValueError(f"host={query['host']!r} is not an http(s)://host[:port] url")
        return f"{given.scheme}://{given.netloc}"
    tls = query.get("tls", "1")
    if tls not in ("0", "1"):
        raise ValueError(f"tls={tls!r} must be 0 or 1")
    if not netloc:
        if tls == "0":
            raise ValueError("tls=0 is for a local server: name it, sendgrid://HOST:PORT?tls=0")
        return API_HOST
    urlsplit(f"//{netloc}").port  # noqa: B018 - raises ValueError for a bad port
    return f"{'https' if tls == '1' else 'http'}://{netloc}"
