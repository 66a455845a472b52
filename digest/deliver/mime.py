"""Wire bytes for a message of a shared variant, encoded once per variant and filled per reader.

Building each message with the email package costs milliseconds. A variant's multipart
skeleton, its headers and the quoted-printable form of its literal body chunks are the same
for every reader, so they are encoded once; per reader only the values between the chunks,
and the headers that differ, are written. Every encoded chunk ends at a line boundary (a hard
line break or a soft one, `=` CRLF), so encoded chunks and values simply concatenate.

Anything this encoder is not sure to write exactly as `to_email_message` would (a non-ASCII
or quoted address, a header value with odd spacing, a value holding a line break) returns
None, and the caller builds that message the slow way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from digest.deliver.message import MESSAGE_POLICY, WIRE_POLICY
from digest.errors import RenderError
from digest.models import OutgoingMessage, SharedBody
from digest.render.markers import PersonalTemplate, Slot, escape_html, keep_text, split_markers

CRLF = b"\r\n"
# RFC 2045 §6.7: encoded lines of at most 76 characters, the soft break's "=" included.
QP_LINE = 76
# RFC 5322 §2.1.1: a header line (CRLF excluded) may be up to 998 characters.
HEADER_LINE = 998

# Each byte as it stands in quoted-printable: printable ASCII (but "=") and space/tab as
# themselves, everything else as =XX.
_QP_BYTE = tuple(
    chr(b) if (33 <= b <= 126 and b != 61) or b in (9, 32) else f"={b:02X}" for b in range(256)
)
# Variants kept encoded at once.
MAX_VARIANTS = 64
# Headers this encoder writes itself; one of them among OutgoingMessage.headers is an error.
_OWN_HEADERS = frozenset(
    ("from", "to", "subject", "date", "mime-version", "content-type", "content-transfer-encoding")
)
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# Text that stands for itself in quoted-printable: printable ASCII but "=", and single spaces.
_QP_SAFE = re.compile(r"[!-<>-~]+(?: [!-<>-~]+)*")
# A dot-atom address (RFC 5322 §3.4.1) the email package writes back unchanged.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
# A header value the email package leaves as it is: printable ASCII words, single spaces.
_PLAIN_HEADER_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")


def quoted_printable(text: str, *, line_break: str = "\n") -> bytes:
    """`text` (lines ending in "\\n") as quoted-printable that ends at a line boundary.

    A last line without "\\n" ends with a soft break, so whatever follows starts a new line
    and decodes as if it followed directly. Empty text gives empty bytes.
    """
    if not text:
        return b""
    if _QP_SAFE.fullmatch(text):
        # Most values (URLs, addresses): nothing to encode, only soft breaks to insert.
        width = QP_LINE - 1
        return "".join(text[i : i + width] + "=\r\n" for i in range(0, len(text), width)).encode(
            "ascii"
        )
    out: list[str] = []
    lines = text.encode("utf-8").split(line_break.encode("ascii"))
    last = len(lines) - 1
    for index, line in enumerate(lines):
        hard = index < last
        if not hard and not line:
            break  # the text ended with a line break
        tokens = [_QP_BYTE[b] for b in line]
        if hard and tokens and line[-1] in (9, 32):
            # Receivers strip trailing white space of a line: encode it (RFC 2045 §6.7 (3)).
            tokens[-1] = f"={line[-1]:02X}"
        current = 0
        for token in tokens:
            if current + len(token) > QP_LINE - 1:
                out.append("=\r\n")
                current = 0
            out.append(token)
            current += len(token)
        out.append("\r\n" if hard else "=\r\n")
    return "".join(out).encode("ascii")


def folded_header(name: str, value: str) -> bytes:
    """One header as the email package writes it with MESSAGE_POLICY (RFC 2047, folding)."""
    message = EmailMessage(policy=MESSAGE_POLICY)
    message[name] = value
    return message.as_bytes(policy=WIRE_POLICY).removesuffix(CRLF)


def plain_header(name: str, value: str) -> bytes | None:
    """`Name: value` CRLF when the email package would write exactly that, else None."""
    if len(name) + 2 + len(value) > HEADER_LINE or not _PLAIN_HEADER_VALUE.fullmatch(value):
        return None
    return f"{name}: {value}\r\n".encode("ascii")


@dataclass(frozen=True, slots=True)
class EncodedPart:
    """One body part of a variant: literal chunks already quoted-printable, slots between."""

    head: bytes  # the part's boundary line and headers, up to and including the blank line
    chunks: tuple[bytes, ...]
    slots: tuple[Slot, ...]
    tails: tuple[bool, ...]  # whether chunk i (as text) ends with a line break
    defaults: tuple[bytes, ...]  # each slot's default, quoted-printable
    escape: Callable[[str], str]


@dataclass(frozen=True, slots=True)
class EncodedVariant:
    """What every reader of one variant shares, already on the wire."""

    sender: bytes
    subject: bytes
    mime: bytes  # MIME-Version and Content-Type, ending the header block
    parts: tuple[EncodedPart, ...]
    close: bytes  # CRLF, the closing boundary, CRLF


class FastEncoder:
    """Message bytes for messages of shared variants; encodes each variant once."""

    def __init__(self) -> None:
        self._variants: dict[tuple[str, str, str], EncodedVariant | None] = {}
        self._headers: dict[tuple[str, str], bytes] = {}
        self._date_line: tuple[datetime, bytes] | None = None

    def encode(self, message: OutgoingMessage, *, date: datetime) -> bytes | None:
        """CRLF wire bytes like `to_email_message`'s, or None when the slow path must build it."""
        shared = message.shared
        if shared is None or not _PLAIN_ADDRESS.fullmatch(message.to):
            return None
        key = (shared.nonce, message.subject, message.sender)
        if key not in self._variants:
            if len(self._variants) >= MAX_VARIANTS:
                self._variants.clear()  # an issue has a few variants; a long-lived one many
            self._variants[key] = encoded_variant(shared, message.subject, message.sender)
        variant = self._variants[key]
        if variant is None:
            return None
        headers = self._headers_of(message)
        if headers is None:
            return None
        out = [variant.sender, b"To: ", message.to.encode("ascii"), CRLF, variant.subject]
        out.append(self._date(date))
        out.extend(headers)
        out.append(variant.mime)
        for part in variant.parts:
            body = filled_part(part, message.personal)
            if body is None:
                return None
            out.append(part.head)
            out.extend(body)
        out.append(variant.close)
        return b"".join(out)

    def _headers_of(self, message: OutgoingMessage) -> list[bytes] | None:
        lines: list[bytes] = []
        for name, value in message.headers.items():
            if name.lower() in _OWN_HEADERS or not _HEADER_NAME.fullmatch(name):
                return None  # a repeated or malformed header: the slow path refuses it
            line = plain_header(name, value)
            if line is None:
                if "\r" in value or "\n" in value:
                    return None  # the slow path refuses it with the right error
                line = self._headers.get((name, value))
                if line is None:
                    if len(self._headers) > 1024:
                        self._headers.clear()  # per-reader values must not pile up
                    line = self._headers[(name, value)] = folded_header(name, value)
            lines.append(line)
        return lines

    def _date(self, date: datetime) -> bytes:
        # One date per batch: keep the last one.
        if self._date_line is None or self._date_line[0] != date:
            self._date_line = (date, f"Date: {format_datetime(date)}\r\n".encode("ascii"))
        return self._date_line[1]


def encoded_variant(shared: SharedBody, subject: str, sender: str) -> EncodedVariant | None:
    """The variant's shared bytes; None when its sender, subject or body needs the slow path."""
    try:
        sender_line = folded_header("From", sender)
        subject_line = folded_header("Subject", subject)
    except Exception:  # noqa: BLE001 - the slow path gives this its proper error
        return None
    # "=_" never occurs in quoted-printable output, so the boundary cannot occur in a part.
    boundary = f"=_digest_{shared.nonce}"
    parts: list[EncodedPart] = []
    for text, subtype, escape in (
        (shared.text, "plain", keep_text),
        (shared.html, "html", escape_html),
    ):
        try:
            template = split_markers(text, shared.nonce)
        except RenderError:
            return None
        encoded = encoded_chunks(template)
        if encoded is None:
            return None
        # The CRLF before a boundary belongs to it (RFC 2046 §5.1.1); the first follows the
        # header block's blank line directly.
        head = (
            ("\r\n" if parts else "") + f"--{boundary}\r\n"
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        chunks, tails = encoded
        defaults = tuple(quoted_printable(slot.default) for slot in template.slots)
        parts.append(
            EncodedPart(head.encode("ascii"), chunks, template.slots, tails, defaults, escape)
        )
    mime = (
        f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    ).encode("ascii")
    close = f"\r\n--{boundary}--\r\n".encode("ascii")
    return EncodedVariant(sender_line, subject_line, mime, tuple(parts), close)


def encoded_chunks(
    template: PersonalTemplate,
) -> tuple[tuple[bytes, ...], tuple[bool, ...]] | None:
    """Each literal chunk, line ends normalised as the email package does, quoted-printable."""
    chunks: list[bytes] = []
    tails: list[bool] = []
    last = len(template.chunks) - 1
    for index, chunk in enumerate(template.chunks):
        if chunk.endswith("\r") and index < last:
            return None  # "\r" + a value's "\n" would be one line break, not two
        text = chunk.replace("\r\n", "\n").replace("\r", "\n")
        chunks.append(quoted_printable(text))
        tails.append(text.endswith("\n") if text else False)
    for slot in template.slots:
        if "\r" in slot.default or "\n" in slot.default:
            return None
    return tuple(chunks), tuple(tails)


def filled_part(part: EncodedPart, values: Mapping[str, str]) -> list[bytes] | None:
    """The part's body for one reader, mirroring PersonalTemplate.fill; None → slow path."""
    out = [part.chunks[0]]
    # Whether the text so far ends with a line break (the email package adds a last one).
    ends_line = part.tails[0] if part.chunks[0] else None
    encoded: dict[str, tuple[bytes, str]] = {}
    for index, slot in enumerate(part.slots, start=1):
        known = encoded.get(slot.field)
        if known is None:
            value = values.get(slot.field)
            if value is None:
                return None
            text = part.escape(value)
            if "\r" in text or "\n" in text:
                return None
            known = encoded[slot.field] = (quoted_printable(text), text)
        data, text = known
        if not text.strip() and slot.default:
            data, text = part.defaults[index - 1], slot.default
        if text:
            out.append(data)
            ends_line = False
        chunk = part.chunks[index]
        if chunk:
            out.append(chunk)
            ends_line = part.tails[index]
    if not ends_line:
        out.append(CRLF)  # the text's last line break, which the email package adds too
    return out
