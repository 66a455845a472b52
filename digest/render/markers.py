"""Personalisation markers: placeholders for per-recipient values that article text cannot forge.

A rendered issue is shared by every recipient of its variant; the unsubscribe link, the
preferences link and the address differ per recipient. The templates write them as markers
`%%digest-<nonce>:<name>%%`, where the nonce is a hash of everything rendered (the issue, the
template name, the context). Article text is part of that hash, so it cannot contain the nonce
in advance, and filling the markers is one regex pass — never a second template pass.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Mapping

from digest.errors import RenderError

# The per-recipient values a template may use; each becomes a template variable holding a marker.
PERSONAL_FIELDS = ("email", "unsubscribe_url", "preferences_url")


def marker_nonce(*rendered_inputs: object) -> str:
    """A stable 64-bit hex nonce for these inputs: the same issue renders the same bytes."""
    material = repr(rendered_inputs).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(material, digest_size=8, person=b"digest-marker").hexdigest()


def marker(nonce: str, name: str) -> str:
    return f"%%digest-{nonce}:{name}%%"


def marker_variables(nonce: str) -> dict[str, str]:
    """Template variables for the personal fields, each holding its marker."""
    return {name: marker(nonce, name) for name in PERSONAL_FIELDS}


def fill_markers(
    text: str, nonce: str, values: Mapping[str, str], escape: Callable[[str], str]
) -> str:
    """Replace every marker of this nonce with `escape(values[name])`; a missing value raises."""

    def value_for(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise RenderError(f"no value for the personal field {name!r} of this issue")
        return escape(values[name])

    return _marker_pattern(nonce).sub(value_for, text)


def escape_html(value: str) -> str:
    return html.escape(value, quote=True)


def keep_text(value: str) -> str:
    return value


def _marker_pattern(nonce: str) -> re.Pattern[str]:
    return re.compile(re.escape(f"%%digest-{nonce}:") + r"([a-z_]+)%%")
