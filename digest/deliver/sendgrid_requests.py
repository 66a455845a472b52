"""Planning SendGrid v3 mail send requests: one shared body per variant, a personalization each.

Messages that share a variant's body (`OutgoingMessage.shared`) go out together, up to 1000
personalizations per request: the body is sent once, with each marker rewritten to a
substitution key, and every personalization carries that reader's values (HTML-escaped for the
html part, raw for the text part), its own headers (List-Unsubscribe, Message-ID) and
`custom_args` that map SendGrid's events back to the outbox row. Other messages go one per
request, as rendered. Pure: no I/O here (digest.deliver.sendgrid sends).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr

from digest.models import OutgoingMessage, SharedBody
from digest.render.markers import PersonalTemplate, Slot, escape_html, keep_text, split_markers

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
# json.dumps (ASCII output) writes a character as at most 12 bytes (a surrogate pair of \uXXXX),
# and a personalization's keys, quotes and punctuation add less than this much.
_JSON_BYTES_PER_CHARACTER = 12
_JSON_STRUCTURE_BYTES = 512


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
    key_bytes: int  # the keys' own share of every reader's substitutions


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
    return Layout(html, text, tuple(keys), sum(_utf8_length(key) for key, _s, _e in keys))


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


@dataclass(frozen=True, slots=True)
class _Reader:
    """One message of a variant, ready to become a personalization."""

    message: OutgoingMessage
    values: dict[str, str]
    headers: dict[str, str]  # those SendGrid takes, as given
    characters: int  # of every string the personalization will hold
    message_id: str = ""  # the Message-ID header, which names the issue and subscriber


def plan_requests(
    batch: Sequence[OutgoingMessage],
    *,
    max_bytes: int = MAX_REQUEST_BYTES,
    layouts: dict[str, Layout] | None = None,
) -> list[MailRequest]:
    """The requests that carry `batch`: one per ≤1000 readers of a variant, one per other
    message. `layouts` caches each variant's layout between calls."""
    layouts = {} if layouts is None else layouts
    # Readers of one body, sender, subject, Reply-To and list share requests.
    variants: dict[tuple[str, ...], list[_Reader]] = {}
    alone: list[OutgoingMessage] = []
    for message in batch:
        values = None
        if message.shared is not None:
            layout = layouts.get(message.shared.nonce)
            if layout is None:
                layout = layouts[message.shared.nonce] = variant_layout(message.shared)
            values = substitutions(layout, message.personal)
        if values is None:
            alone.append(message)  # sent as rendered, without substitutions
            continue
        joined = "".join(values.values())
        if layout.key_bytes + _utf8_length(joined) > MAX_SUBSTITUTION_BYTES:
            alone.append(message)
            continue
        headers = _headers(message)
        lowered = {name.lower(): value for name, value in message.headers.items()}
        characters = len(message.to) + len(joined) + len(message.delivery_id) + 64
        characters += sum(map(len, headers)) + sum(map(len, headers.values()))
        characters += len(layout.keys) * 40
        reader = _Reader(message, values, headers, characters, lowered.get("message-id", ""))
        variant = (
            message.shared.nonce,
            message.sender,
            message.subject,
            lowered.get("reply-to", ""),
            _list_name(lowered.get("list-id", ""), message.sender),
        )
        variants.setdefault(variant, []).append(reader)
    requests = [
        request
        for readers in variants.values()
        for request in _variant_requests(readers, layouts, max_bytes)
    ]
    return requests + [_single_request(message) for message in alone]


def _variant_requests(
    readers: list[_Reader], layouts: Mapping[str, Layout], max_bytes: int
) -> list[MailRequest]:
    first = readers[0].message
    assert first.shared is not None
    layout = layouts[first.shared.nonce]
    common = _common_headers([reader.headers for reader in readers])
    base = _base_body(first, html=layout.html, text=layout.text, headers=common)
    base_size = len(json.dumps({**base, "personalizations": []}))
    requests: list[MailRequest] = []
    chunk: list[dict[str, object]] = []
    ids: list[str] = []
    addresses: set[str] = set()
    # An upper bound of the request's size while it is far under `max_bytes`; the exact size,
    # item by item, once the bound comes near it (measuring costs as much as sending).
    size, exact = base_size, False
    for reader in readers:
        personalization = _personalization(reader, common)
        grows = reader.characters * _JSON_BYTES_PER_CHARACTER + _JSON_STRUCTURE_BYTES
        if not exact and size + grows > max_bytes:
            size, exact = base_size + sum(_json_size(p) for p in chunk), True
        if exact:
            grows = _json_size(personalization)
        address = reader.message.to.lower()  # the same address twice in one request is a 400
        if chunk and (
            len(chunk) == MAX_PERSONALIZATIONS or size + grows > max_bytes or address in addresses
        ):
            requests.append(MailRequest({**base, "personalizations": chunk}, tuple(ids)))
            chunk, ids, addresses, size, exact = [], [], set(), base_size, False
            grows = reader.characters * _JSON_BYTES_PER_CHARACTER + _JSON_STRUCTURE_BYTES
        chunk.append(personalization)
        ids.append(reader.message.delivery_id)
        addresses.add(address)
        size += grows
    requests.append(MailRequest({**base, "personalizations": chunk}, tuple(ids)))
    return requests


def _json_size(personalization: Mapping[str, object]) -> int:
    # ", " between items: the client serialises with json.dumps' default separators.
    return len(json.dumps(personalization)) + 2


def _single_request(message: OutgoingMessage) -> MailRequest:
    headers = _headers(message)
    body = _base_body(message, html=message.html, text=message.text, headers=headers)
    body["personalizations"] = [
        _personalization(_Reader(message, {}, headers, characters=0), headers)
    ]
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


def _personalization(reader: _Reader, common: Mapping[str, str]) -> dict[str, object]:
    personalization: dict[str, object] = {"to": [{"email": reader.message.to}]}
    if reader.values:
        personalization["substitutions"] = reader.values
    own = {name: value for name, value in reader.headers.items() if name not in common}
    if own:
        personalization["headers"] = own
    message_id = reader.message_id or _header(reader.message, "Message-ID")
    personalization["custom_args"] = _tracking_args(reader.message.delivery_id, message_id)
    return personalization


def tracking_args(message: OutgoingMessage) -> dict[str, str]:
    """custom_args that SendGrid returns in every event: the outbox row, issue and subscriber."""
    return _tracking_args(message.delivery_id, _header(message, "Message-ID"))


def _tracking_args(delivery_id: str, message_id: str) -> dict[str, str]:
    args = {"delivery_id": delivery_id}
    if found := _MESSAGE_ID.fullmatch(message_id):
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
    return {name: value for name, value in message.headers.items() if not _is_reserved(name)}


@functools.lru_cache(maxsize=256)
def _is_reserved(name: str) -> bool:
    lowered = name.lower()
    return lowered in RESERVED_HEADERS or lowered.startswith("x-sg-")


def _common_headers(every: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """Headers every message has with the same value: they are sent once per request."""
    common = dict(every[0])
    for own in every[1:]:
        if common:
            common = {name: value for name, value in common.items() if own.get(name) == value}
    return common


def _header(message: OutgoingMessage, name: str) -> str:
    if (value := message.headers.get(name)) is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in message.headers.items() if k.lower() == wanted), "")


def _address(value: str) -> dict[str, str]:
    name, email = parseaddr(value)
    return {"email": email, "name": name} if name else {"email": email}


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))
