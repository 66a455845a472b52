"""The SendGrid backend: v3 mail send, one body per variant with per-recipient substitutions.

Messages that share a variant's body (`OutgoingMessage.shared`) go out together, up to 1000
personalizations per request: the body is sent once, with each marker rewritten to a
substitution key, and every personalization carries that reader's values (HTML-escaped for the
html part, raw for the text part), its own headers (List-Unsubscribe, Message-ID) and
`custom_args` that map SendGrid's events back to the outbox row. Other messages go one per
request, as rendered.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import logging
import os
import re
import urllib.error
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr, parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import python_http_client.exceptions
from sendgrid import SendGridAPIClient

from digest.errors import ConfigError, DeliveryError
from digest.models import DeliveryState, OutgoingMessage, SendResult, SharedBody
from digest.render.markers import PersonalTemplate, Slot, escape_html, keep_text, split_markers

log = logging.getLogger(__name__)

# python_http_client logs each request's headers (the API key) and body at DEBUG.
logging.getLogger("python_http_client").setLevel(logging.INFO)

API_HOST = "https://api.sendgrid.com"
# SendGrid's limits on POST /v3/mail/send; a request over any of them is refused whole.
MAX_PERSONALIZATIONS = 1000
MAX_REQUEST_BYTES = 30_000_000
MAX_SUBSTITUTION_BYTES = 10_000
# Headers SendGrid will not take from us (compared lowercased); Reply-To has its own field.
RESERVED_HEADERS = frozenset(
    [
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    ]
)
# Our Message-ID form (digest.deliver.message.message_id): it names the issue and subscriber.
_MESSAGE_ID = re.compile(r"<digest\.(\d+)\.(\d+)@[^>]+>")
_PERSONALIZATION_FIELD = re.compile(r"personalizations\.(\d+)(?:\.|$)")


@dataclass(frozen=True, slots=True)
class MailRequest:
    """One POST /v3/mail/send: its JSON body, and the message of each personalization."""

    body: dict[str, object]
    delivery_ids: tuple[str, ...]

    def without(self, positions: Sequence[int]) -> MailRequest:
        """The same request less the personalizations at `positions`."""
        dropped = set(positions)
        personalizations = self.body["personalizations"]
        assert isinstance(personalizations, list)
        kept = [i for i in range(len(self.delivery_ids)) if i not in dropped]
        return MailRequest(
            {**self.body, "personalizations": [personalizations[i] for i in kept]},
            tuple(self.delivery_ids[i] for i in kept),
        )


@dataclass(frozen=True, slots=True)
class Layout:
    """A variant's html and text with each marker replaced by a substitution key, and what
    each key stands for (its slot and how the part escapes a value)."""

    html: str
    text: str
    keys: tuple[tuple[str, Slot, Callable[[str], str]], ...]


def variant_layout(shared: SharedBody) -> Layout:
    """Html keys and text keys differ, so one value can be escaped in html and raw in text."""
    keys: list[tuple[str, Slot, Callable[[str], str]]] = []

    def keyed(template: PersonalTemplate, part: str, escape: Callable[[str], str]) -> str:
        names: dict[Slot, str] = {}
        pieces = [template.chunks[0]]
        for slot, chunk in zip(template.slots, template.chunks[1:], strict=True):
            if slot not in names:
                # The marker prefix never occurs in article text (see digest.render.markers).
                names[slot] = f"%%digest-{shared.nonce}:{part}{len(names)}%%"
                keys.append((names[slot], slot, escape))
            pieces += [names[slot], chunk]
        return "".join(pieces)

    html = keyed(split_markers(shared.html, shared.nonce), "h", escape_html)
    text = keyed(split_markers(shared.text, shared.nonce), "t", keep_text)
    return Layout(html, text, tuple(keys))


def substitutions(layout: Layout, personal: Mapping[str, str]) -> dict[str, str] | None:
    """Each key's value for one reader, as PersonalTemplate.fill writes it; None when a value
    is missing."""
    values: dict[str, str] = {}
    for key, slot, escape in layout.keys:
        if slot.field not in personal:
            return None
        value = escape(personal[slot.field])
        values[key] = value if value.strip() or not slot.default else slot.default
    return values


def plan_requests(
    batch: Sequence[OutgoingMessage],
    *,
    max_bytes: int = MAX_REQUEST_BYTES,
    layouts: dict[str, Layout] | None = None,
) -> list[MailRequest]:
    """The requests that carry `batch`: one per ≤1000 readers of a variant, one per other
    message. `layouts` caches each variant's layout between calls."""
    layouts = {} if layouts is None else layouts
    variants: dict[tuple[str, ...], list[tuple[OutgoingMessage, dict[str, str]]]] = {}
    alone: list[OutgoingMessage] = []
    for message in batch:
        values = None
        if message.shared is not None:
            layout = layouts.get(message.shared.nonce)
            if layout is None:
                layout = layouts[message.shared.nonce] = variant_layout(message.shared)
            values = substitutions(layout, message.personal)
        if values is None or _substitution_bytes(values) > MAX_SUBSTITUTION_BYTES:
            alone.append(message)  # sent as rendered, without substitutions
            continue
        variants.setdefault(_variant_key(message), []).append((message, values))
    requests = [
        request
        for members in variants.values()
        for request in _variant_requests(members, layouts, max_bytes)
    ]
    return requests + [_single_request(message) for message in alone]


def _variant_key(message: OutgoingMessage) -> tuple[str, ...]:
    assert message.shared is not None
    reply_to = _header(message, "Reply-To")
    return (message.shared.nonce, message.sender, message.subject, reply_to, _category(message))


def _variant_requests(
    members: list[tuple[OutgoingMessage, dict[str, str]]],
    layouts: Mapping[str, Layout],
    max_bytes: int,
) -> list[MailRequest]:
    first = members[0][0]
    assert first.shared is not None
    layout = layouts[first.shared.nonce]
    common = _common_headers([message for message, _values in members])
    base = _base_body(first, html=layout.html, text=layout.text, headers=common)
    base_size = len(json.dumps({**base, "personalizations": []}))
    requests: list[MailRequest] = []
    chunk: list[dict[str, object]] = []
    ids: list[str] = []
    addresses: set[str] = set()
    size = base_size
    for message, values in members:
        personalization = _personalization(message, values, common)
        # ", " between items: the client serialises with json.dumps' default separators.
        grows = len(json.dumps(personalization)) + 2
        address = message.to.lower()  # the same address twice in one request is a 400
        if chunk and (
            len(chunk) == MAX_PERSONALIZATIONS or size + grows > max_bytes or address in addresses
        ):
            requests.append(MailRequest({**base, "personalizations": chunk}, tuple(ids)))
            chunk, ids, addresses, size = [], [], set(), base_size
        chunk.append(personalization)
        ids.append(message.delivery_id)
        addresses.add(address)
        size += grows
    requests.append(MailRequest({**base, "personalizations": chunk}, tuple(ids)))
    return requests


def _single_request(message: OutgoingMessage) -> MailRequest:
    headers = _headers(message)
    body = _base_body(message, html=message.html, text=message.text, headers=headers)
    body["personalizations"] = [_personalization(message, {}, headers)]
    return MailRequest(body, (message.delivery_id,))


def _base_body(
    message: OutgoingMessage, *, html: str, text: str, headers: Mapping[str, str]
) -> dict[str, object]:
    # text/plain must come before text/html, and an empty part is refused.
    content = [
        {"type": kind, "value": value}
        for kind, value in (("text/plain", text), ("text/html", html))
        if value
    ]
    body: dict[str, object] = {
        "from": _address(message.sender),
        "subject": message.subject,
        "content": content,
    }
    if reply_to := _header(message, "Reply-To"):
        body["reply_to"] = _address(reply_to)
    if headers:
        body["headers"] = dict(headers)
    if category := _category(message):
        body["categories"] = [category]
    return body


def _personalization(
    message: OutgoingMessage, values: Mapping[str, str], common: Mapping[str, str]
) -> dict[str, object]:
    personalization: dict[str, object] = {"to": [{"email": message.to}]}
    if values:
        personalization["substitutions"] = values
    own = {name: value for name, value in _headers(message).items() if name not in common}
    if own:
        personalization["headers"] = own
    personalization["custom_args"] = tracking_args(message)
    return personalization


def tracking_args(message: OutgoingMessage) -> dict[str, str]:
    """custom_args that SendGrid returns in every event: the outbox row, issue and subscriber."""
    args = {"delivery_id": message.delivery_id}
    if found := _MESSAGE_ID.fullmatch(_header(message, "Message-ID")):
        args["issue_id"], args["subscriber_id"] = found.groups()
    return args


def _category(message: OutgoingMessage) -> str:
    return _list_name(_header(message, "List-Id"), message.sender)


@functools.lru_cache(maxsize=64)
def _list_name(list_id: str, sender: str) -> str:
    """The list name from List-Id's `<list.sender-domain>`, e.g. 'weekly'."""
    identifier = list_id[list_id.rfind("<") + 1 :].rstrip(">").strip()
    domain = parseaddr(sender)[1].rpartition("@")[2].lower()
    name = identifier.lower().removesuffix("." + domain) if identifier else ""
    return name[:255]


def _headers(message: OutgoingMessage) -> dict[str, str]:
    return {
        name: value
        for name, value in message.headers.items()
        if name.lower() not in RESERVED_HEADERS and not name.lower().startswith("x-sg-")
    }


def _common_headers(messages: Sequence[OutgoingMessage]) -> dict[str, str]:
    """Headers every message has with the same value: they are sent once per request."""
    common = _headers(messages[0])
    for message in messages[1:]:
        own = _headers(message)
        common = {name: value for name, value in common.items() if own.get(name) == value}
    return common


def _header(message: OutgoingMessage, name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in message.headers.items() if k.lower() == wanted), "")


def _address(value: str) -> dict[str, str]:
    name, email = parseaddr(value)
    return {"email": email, "name": name} if name else {"email": email}


def _substitution_bytes(values: Mapping[str, str]) -> int:
    return sum(_utf8_length(k) + _utf8_length(v) for k, v in values.items())


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# --- sending -----------------------------------------------------------------------------


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
