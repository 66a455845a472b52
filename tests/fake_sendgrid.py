"""A fake SendGrid v3 mail send on 127.0.0.1: validates like the real API, records what each
recipient would get, and injects faults (429, 5xx, slow answers, dropped connections).

In tests: `with FakeSendGrid() as fake: ...` and point the real client at `fake.url`.
For benchmarks, in its own process: `python -m tests.fake_sendgrid --record addresses`
prints its port, serves until stdin closes, and answers `GET /fake/stats` with counts.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import secrets
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

# The real API's limits (see ../shared/reference/SENDING.md).
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_REQUEST_BYTES = 30_000_000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORIES = 10
RESERVED_HEADERS = frozenset(
    {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type"}
    | {"content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"}
)
_EMAIL = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+")

Fault = Literal["429", "500", "502", "503", "slow", "drop", "drop-unaccepted"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One recipient of an accepted request: what SendGrid would put in their inbox."""

    to: str
    sender: dict[str, str]
    subject: str
    headers: dict[str, str]
    custom_args: dict[str, str]
    categories: tuple[str, ...]
    message_id: str  # the request's X-Message-Id
    reply_to: dict[str, str] | None
    _content: tuple[tuple[str, str], ...] = field(repr=False)
    _substitutions: dict[str, str] = field(repr=False)

    @property
    def html(self) -> str:
        return self._rendered("text/html")

    @property
    def text(self) -> str:
        return self._rendered("text/plain")

    def _rendered(self, kind: str) -> str:
        value = next((v for k, v in self._content if k == kind), "")
        return substitute(value, self._substitutions)


@dataclass(frozen=True, slots=True)
class Request:
    """Every request the fake saw, answered or not."""

    status: int  # 0: the connection was dropped
    personalizations: int
    size: int
    errors: tuple[dict[str, Any], ...] = ()


def substitute(text: str, values: Mapping[str, str]) -> str:
    """SendGrid's substitutions: each key replaced by its value, values not scanned again."""
    if not values:
        return text
    keys = sorted(values, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(key) for key in keys))
    return pattern.sub(lambda found: values[found.group(0)], text)


class FakeSendGrid:
    """`record="full"` keeps every Delivery; `"addresses"` only counts recipients (benchmarks)."""

    def __init__(
        self,
        api_key: str = "SG.fake-key",
        *,
        record: Literal["full", "addresses"] = "full",
        max_request_bytes: int = MAX_REQUEST_BYTES,
        slow_seconds: float = 2.0,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.record = record
        self.max_request_bytes = max_request_bytes
        self.slow_seconds = slow_seconds
        self.deliveries: list[Delivery] = []
        self.addresses: Counter[str] = Counter()
        self.requests: list[Request] = []
        self._planned: deque[tuple[Fault, float]] = deque()
        self._rate = 0.0
        self._random_faults: tuple[Fault, ...] = ()
        self._random = random.Random(0)
        self._random_retry_after = 0.0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- running ---

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mail_url(self) -> str:
        return f"sendgrid://127.0.0.1:{self.port}?tls=0"

    def start(self) -> FakeSendGrid:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- faults ---

    def fail_next(self, fault: Fault, times: int = 1, *, retry_after: float = 0.0) -> None:
        """The next `times` requests meet `fault` (429s carry `retry_after` seconds)."""
        with self._lock:
            self._planned.extend([(fault, retry_after)] * times)

    def fail_randomly(
        self, rate: float, faults: Iterable[Fault], *, seed: int = 0, retry_after: float = 0.0
    ) -> None:
        """Each request meets one of `faults` with probability `rate` (after planned ones)."""
        with self._lock:
            self._rate, self._random_faults = rate, tuple(faults)
            self._random = random.Random(seed)
            self._random_retry_after = retry_after

    def _next_fault(self) -> tuple[Fault, float] | None:
        with self._lock:
            if self._planned:
                return self._planned.popleft()
            if self._random_faults and self._random.random() < self._rate:
                return self._random.choice(self._random_faults), self._random_retry_after
            return None

    # --- what was received ---

    def received(self, address: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.to.lower() == address.lower()]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": len(self.requests),
                "accepted_requests": sum(r.status == 202 for r in self.requests),
                "recipients": sum(self.addresses.values()),
                "distinct": len(self.addresses),
                "duplicates": sum(n - 1 for n in self.addresses.values() if n > 1),
            }

    def events(self, kind: str = "processed", *, timestamp: int = 0) -> list[dict[str, Any]]:
        """What SendGrid's event webhook would post about every delivery so far: one event
        each, with the message's custom_args at the top level (needs record="full")."""
        with self._lock:
            deliveries = list(self.deliveries)
        return [
            {
                "email": delivery.to,
                "event": kind,
                "sg_event_id": f"{kind}-{number}-{delivery.message_id}",
                "sg_message_id": f"{delivery.message_id}.filter0001.{number}",
                "timestamp": timestamp or int(time.time()),
                **delivery.custom_args,
            }
            for number, delivery in enumerate(deliveries)
        ]

    # --- the API ---

    def answer(
        self, headers: Mapping[str, str], raw: bytes, *, dropped: bool = False
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body or None) for one POST /v3/mail/send, and the request
        logged (`dropped`: its answer will be lost)."""
        status, extra, reply, count = self._judge(headers, raw)
        errors = tuple(reply["errors"]) if reply else ()
        self._log(Request(0 if dropped else status, count, len(raw), errors))
        return status, extra, reply

    def _judge(
        self, headers: Mapping[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], Any, int]:
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {}, _errors([(None, "The provided authorization grant is invalid")]), -1
        if len(raw) > self.max_request_bytes:
            return 413, {}, _errors([(None, "The JSON payload you have included is too large")]), -1
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {}, _errors([(None, "The request body is not valid JSON")]), -1
        if not isinstance(body, dict):
            return 400, {}, _errors([(None, "The request body must be a JSON object")]), -1
        if problems := list(_mail_problems(body)):
            return 400, {}, _errors(problems), -1
        message_id = secrets.token_urlsafe(16)[:22]
        self._accept(body, message_id)
        return 202, {"X-Message-Id": message_id}, None, len(body["personalizations"])

    def _accept(self, body: dict[str, Any], message_id: str) -> None:
        content = tuple((part["type"], part["value"]) for part in body["content"])
        with self._lock:
            for personalization in body["personalizations"]:
                for recipient in personalization["to"]:
                    self.addresses[recipient["email"].lower()] += 1
                    if self.record == "full":
                        self.deliveries.append(
                            _delivery(body, personalization, recipient, content, message_id)
                        )

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


def _delivery(
    body: dict[str, Any],
    personalization: dict[str, Any],
    recipient: dict[str, str],
    content: tuple[tuple[str, str], ...],
    message_id: str,
) -> Delivery:
    values = personalization.get("substitutions") or {}
    subject = personalization.get("subject") or body.get("subject", "")
    return Delivery(
        to=recipient["email"],
        sender=body["from"],
        subject=substitute(subject, values),
        headers={**body.get("headers", {}), **personalization.get("headers", {})},
        custom_args={**body.get("custom_args", {}), **personalization.get("custom_args", {})},
        categories=tuple(body.get("categories", ())),
        message_id=message_id,
        reply_to=body.get("reply_to"),
        _content=content,
        _substitutions=values,
    )


def _mail_problems(body: dict[str, Any]) -> Iterator[tuple[str | None, str]]:
    """Every rule the real v3 API enforces that our requests could break, as (field, message)."""
    sender = body.get("from")
    if not isinstance(sender, dict) or not _is_email(sender.get("email")):
        yield "from.email", "The from email does not contain a valid address."
    if "reply_to" in body and not _is_email((body["reply_to"] or {}).get("email")):
        yield "reply_to.email", "The reply_to email does not contain a valid address."
    yield from _content_problems(body.get("content"))
    yield from _header_problems("headers", body.get("headers", {}))
    yield from _args_problems("custom_args", body.get("custom_args", {}))
    categories = body.get("categories", [])
    if not isinstance(categories, list) or len(categories) > MAX_CATEGORIES:
        yield "categories", "You may not have more than 10 categories per request."
    elif any(not isinstance(c, str) or len(c) > 255 for c in categories):
        yield "categories", "A category name must be a string of at most 255 characters."
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        yield (
            "personalizations",
            "The personalizations field is required and must have at least one personalization.",
        )
        return
    if len(personalizations) > MAX_PERSONALIZATIONS:
        yield (
            "personalizations",
            (
                "The personalization block is limited to 1000 personalizations per API request. "
                f"You have provided {len(personalizations)} personalizations."
            ),
        )
        return
    has_subject = bool(body.get("subject"))
    seen: set[str] = set()
    recipients = 0
    for index, personalization in enumerate(personalizations):
        where = f"personalizations.{index}"
        if not isinstance(personalization, dict):
            yield where, "A personalization must be an object."
            continue
        to = personalization.get("to")
        if not isinstance(to, list) or not to:
            yield (
                f"{where}.to",
                (
                    "The to array is required for all personalization objects, and must have at "
                    "least one email object with a valid email address."
                ),
            )
            continue
        for position, recipient in enumerate(to):
            address = recipient.get("email") if isinstance(recipient, dict) else None
            if not _is_email(address):
                yield f"{where}.to.{position}.email", "Does not contain a valid address."
                continue
            recipients += 1
            if address.lower() in seen:
                yield (
                    f"{where}.to",
                    (
                        "Each email address in the personalization block should be unique between "
                        f"to, cc, and bcc. We found the first duplicate instance of [{address}] in "
                        f"the {where}.to field."
                    ),
                )
            seen.add(address.lower())
        if not has_subject and not personalization.get("subject"):
            yield (
                "subject",
                (
                    "The subject is required. You can get around this requirement if you use a "
                    "template with a subject defined or if every personalization has a subject "
                    "defined."
                ),
            )
            has_subject = True  # said once
        values = personalization.get("substitutions", {})
        if not isinstance(values, dict) or any(not isinstance(v, str) for v in values.values()):
            yield f"{where}.substitutions", "Substitutions must be an object of strings."
        elif _bytes(values) > MAX_SUBSTITUTION_BYTES:
            yield (
                f"{where}.substitutions",
                (
                    "The total size of substitutions may not exceed 10,000 bytes per "
                    "personalization."
                ),
            )
        yield from _header_problems(f"{where}.headers", personalization.get("headers", {}))
        yield from _args_problems(f"{where}.custom_args", personalization.get("custom_args", {}))
    if recipients > MAX_RECIPIENTS:
        yield (
            "personalizations",
            "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
        )


def _content_problems(content: Any) -> Iterator[tuple[str | None, str]]:
    if not isinstance(content, list) or not content:
        yield "content", "Unless a valid template_id is provided, the content array is required."
        return
    kinds = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or not part.get("type"):
            yield (
                f"content.{index}.type",
                "The content type must be a string at least one character in length.",
            )
            continue
        if not isinstance(part.get("value"), str) or not part["value"]:
            yield (
                f"content.{index}.value",
                "The content value must be a string at least one character in length.",
            )
        kinds.append(part["type"])
    if "text/plain" in kinds and kinds[0] != "text/plain":
        yield "content", "If present, text/plain content must be first, followed by text/html."
    if "text/html" in kinds and kinds.index("text/html") > int("text/plain" in kinds):
        yield "content", "If present, text/plain content must be first, followed by text/html."


def _header_problems(where: str, headers: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(headers, dict):
        yield where, "Headers must be an object of strings."
        return
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS or name.lower().startswith("x-sg-"):
            yield where, f"The header {name} is reserved and cannot be set."
        elif not isinstance(value, str) or "\n" in value or "\r" in value:
            yield where, f"The header {name} must be a string on one line."


def _args_problems(where: str, args: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(args, dict) or any(not isinstance(v, str) for v in args.values()):
        yield where, "custom_args must be an object of strings."
    elif len(json.dumps(args)) > MAX_CUSTOM_ARGS_BYTES:
        yield where, "custom_args may not exceed 10,000 bytes."


def _is_email(value: Any) -> bool:
    return isinstance(value, str) and _EMAIL.fullmatch(value) is not None


def _bytes(values: Mapping[str, str]) -> int:
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in values.items())


def _errors(problems: Iterable[tuple[str | None, str]]) -> dict[str, Any]:
    return {"errors": [{"field": f, "message": m, "help": None} for f, m in problems]}


def _handler_for(fake: FakeSendGrid) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: tests read what they need from the fake

        def do_GET(self) -> None:
            if self.path == "/fake/stats":
                self._reply(200, {}, fake.stats())
            else:
                self._reply(404, {}, _errors([(None, "not found")]))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v3/mail/send":
                self._reply(404, {}, _errors([(None, "not found")]))
                return
            fault = fake._next_fault()
            kind, wait = fault if fault else (None, 0.0)
            if kind == "slow":
                time.sleep(fake.slow_seconds)
            if kind in ("429", "500", "502", "503"):
                status = int(kind)
                extra = {}
                if status == 429 and wait:
                    extra = {
                        "Retry-After": f"{wait:g}",
                        "X-RateLimit-Reset": str(int(time.time() + wait)),
                    }
                message = "too many requests" if status == 429 else "internal server error"
                fake._log(Request(status, -1, len(raw)))
                self._reply(status, extra, _errors([(None, message)]))
                return
            if kind == "drop-unaccepted":
                fake._log(Request(0, -1, len(raw)))
                self.close_connection = True
                return
            status, headers, body = fake.answer(self.headers, raw, dropped=kind == "drop")
            if kind == "drop":  # taken, and then the answer is lost
                self.close_connection = True
                return
            self._reply(status, headers, body)

        def _reply(self, status: int, headers: Mapping[str, str], body: Any) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a slow answer past its timeout)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="SG.fake-key")
    parser.add_argument("--record", choices=("full", "addresses"), default="addresses")
    options = parser.parse_args()
    fake = FakeSendGrid(options.api_key, record=options.record, port=options.port).start()
    print(fake.port, flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin (or dies)
    fake.stop()


if __name__ == "__main__":
    main()
