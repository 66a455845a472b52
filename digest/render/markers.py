"""Personalisation markers: placeholders for per-recipient values that article text cannot forge.

A rendered issue is shared by every recipient of its variant; the unsubscribe link, the
preferences link, the address and the name differ per recipient. The templates write them as
markers `%%digest-<nonce>:<field>%%`, or `%%digest-<nonce>:<field>:<hex>%%` where `<hex>` is
the UTF-8 of a template-written default for an empty value. The nonce is a hash of everything
rendered (the issue, the template name, the context): article text is part of that hash, so it
cannot contain the nonce in advance, and a hex default cannot end a marker or start another.

Each part is split at its markers once per variant (`split_markers`); filling joins the literal
chunks with the escaped values, so a value is never scanned for markers and there is never a
second template pass.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jinja2
import markupsafe
from jinja2.nodes import EvalContext

from digest.errors import RenderError

# The per-recipient values a template may use; each becomes a template variable holding a marker.
PERSONAL_FIELDS = ("email", "unsubscribe_url", "preferences_url", "name", "confirm_url")

# The template function that writes a marker with a default: {{ personal("name", "there") }}.
PERSONAL_FUNCTION = "personal"


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one marker stood: its field, and what to write when the value is empty."""

    field: str
    default: str  # already as the part needs it (escaped by the template's autoescaping)


@dataclass(frozen=True, slots=True)
class PersonalTemplate:
    """One rendered part split at its markers: `chunks[i]`, then `slots[i]`, ..., `chunks[-1]`."""

    chunks: tuple[str, ...]
    slots: tuple[Slot, ...]

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(slot.field for slot in self.slots)

    def fill(self, values: Mapping[str, str], escape: Callable[[str], str]) -> str:
        """Every slot gets `escape(values[field])`, or its default when that value is blank."""
        escaped: dict[str, str] = {}
        parts = [self.chunks[0]]
        for slot, chunk in zip(self.slots, self.chunks[1:], strict=True):
            text = escaped.get(slot.field)
            if text is None:
                text = escaped[slot.field] = escape(_value_of(values, slot.field))
            parts.append(text if text.strip() or not slot.default else slot.default)
            parts.append(chunk)
        return "".join(parts)


def marker_nonce(*rendered_inputs: object) -> str:
    """A stable 64-bit hex nonce for these inputs: the same issue renders the same bytes."""
    material = repr(rendered_inputs).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(material, digest_size=8, person=b"digest-marker").hexdigest()


def marker(nonce: str, field: str, default: str = "") -> str:
    """The marker for `field`; a non-empty `default` is hex-encoded so it cannot end the marker."""
    if field not in PERSONAL_FIELDS:
        raise ValueError(f"unknown personal field {field!r}; known: {', '.join(PERSONAL_FIELDS)}")
    encoded = f":{default.encode('utf-8').hex()}" if default else ""
    return f"%%digest-{nonce}:{field}{encoded}%%"


def marker_variables(nonce: str) -> dict[str, object]:
    """Template variables: each personal field holding its marker, and `personal(field, default)`.

    The default is template output like any `{{ ... }}`: escaped in an autoescaping (HTML)
    template, as written in a text template, and a `|safe` default passes unchanged.
    """

    @jinja2.pass_eval_context
    def personal(eval_context: EvalContext, field: str, default: object = "") -> str:
        written = markupsafe.escape(default) if eval_context.autoescape else str(default)
        return marker(nonce, field, str(written))

    variables: dict[str, object] = {field: marker(nonce, field) for field in PERSONAL_FIELDS}
    variables[PERSONAL_FUNCTION] = personal
    return variables


def split_markers(text: str, nonce: str) -> PersonalTemplate:
    """Split a rendered part once at this nonce's markers; a malformed marker raises."""
    pieces = _marker_pattern(nonce).split(text)
    # re.split with two groups: chunk, field, hex default (or None), chunk, ...
    chunks = tuple(pieces[0::3])
    slots = tuple(
        Slot(field, _decoded_default(field, encoded))
        for field, encoded in zip(pieces[1::3], pieces[2::3], strict=True)
    )
    prefix = f"%%digest-{nonce}:"
    if any(prefix in chunk for chunk in chunks):
        raise RenderError(f"a personalisation marker {prefix}…%% is malformed")
    return PersonalTemplate(chunks, slots)


def fill_markers(
    text: str, nonce: str, values: Mapping[str, str], escape: Callable[[str], str]
) -> str:
    """Replace every marker of this nonce with `escape(values[field])` (or its default)."""
    return split_markers(text, nonce).fill(values, escape)


def escape_html(value: str) -> str:
    # Most values (links, addresses) need no escaping: one scan instead of five replaces.
    return html.escape(value, quote=True) if _HTML_SPECIAL.search(value) else value


_HTML_SPECIAL = re.compile(r"[&<>\"']")


def keep_text(value: str) -> str:
    return value


def _value_of(values: Mapping[str, str], field: str) -> str:
    try:
        return values[field]
    except KeyError:
        raise RenderError(f"no value for the personal field {field!r} of this issue") from None


def _decoded_default(field: str, encoded: str | None) -> str:
    if encoded is None:
        return ""
    try:
        return bytes.fromhex(encoded).decode("utf-8")
    except ValueError as error:
        raise RenderError(f"the default of personal field {field!r} is malformed") from error


def _marker_pattern(nonce: str) -> re.Pattern[str]:
    return re.compile(re.escape(f"%%digest-{nonce}:") + r"([a-z_]+)(?::([0-9a-f]+))?%%")
