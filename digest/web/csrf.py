"""Cross-site request forgery protection: a signed double-submit token, no server-side session.

A page with a form sets a random nonce in a SameSite=Lax cookie and puts the nonce, signed
with the app's secret, in a hidden field. A POST is accepted only when the field's signature is
ours and its nonce equals the cookie's. Another site can make a browser send our cookie (Lax
lets top-level navigations through) but can read neither the cookie nor our pages, so it
cannot fill in the field; and without the secret it cannot sign a nonce of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, Signer
from starlette.responses import Response

COOKIE_NAME = "digest_csrf"
FIELD_NAME = "csrf_token"
# 128 random bits, URL-safe base64 without padding: 22 characters.
_NONCE = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass(frozen=True, slots=True)
class CsrfPair:
    """The cookie's nonce and the hidden field's value that goes with it."""

    nonce: str
    field_value: str
    is_new: bool  # the browser does not hold this nonce yet: the response must set the cookie


class CsrfGuard:
    """Issues and checks the tokens; one per app, keyed by the app's secret."""

    def __init__(self, secret: str) -> None:
        self._signer = Signer(secret, salt="csrf", digest_method=hashlib.sha256)

    def pair_for(self, cookie: str | None) -> CsrfPair:
        """The token for a page: the browser's nonce if it has a well-formed one, else a new one."""
        if cookie is not None and _NONCE.fullmatch(cookie):
            return CsrfPair(cookie, self._sign(cookie), is_new=False)
        nonce = secrets.token_urlsafe(16)
        return CsrfPair(nonce, self._sign(nonce), is_new=True)

    def is_valid(self, cookie: str | None, field_value: str | None) -> bool:
        """Whether a POST's hidden field was signed by us for the nonce its cookie holds."""
        # A cookie not of our nonce's form (say, non-ASCII, which compare_digest refuses with
        # a TypeError) cannot match.
        if not cookie or not field_value or not _NONCE.fullmatch(cookie):
            return False
        try:
            signed_nonce = self._signer.unsign(field_value).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return False
        return hmac.compare_digest(signed_nonce, cookie)

    def _sign(self, nonce: str) -> str:
        return self._signer.sign(nonce).decode("ascii")


class SessionCsrfGuard:
    """The same double-submit token, also tied to a login session (the editor's pages).

    The field holds the nonce and a signature over the nonce *and* a value derived from the
    session, which the field does not reveal: a token copied from another session, from before
    logging in again, or from a public page (another salt) is refused.
    """

    def __init__(self, secret: str) -> None:
        self._signer = Signer(secret, salt="csrf-session", digest_method=hashlib.sha256)

    def pair_for(self, cookie: str | None, session: str) -> CsrfPair:
        """The token for a page seen in `session` ("" before logging in)."""
        nonce = cookie if cookie is not None and _NONCE.fullmatch(cookie) else None
        if nonce is None:
            nonce = secrets.token_urlsafe(16)
        return CsrfPair(nonce, self._field(nonce, session), is_new=nonce != cookie)

    def is_valid(self, cookie: str | None, field_value: str | None, session: str) -> bool:
        """Whether a POST's field was made for its cookie's nonce in this session."""
        if not cookie or not field_value or not _NONCE.fullmatch(cookie):
            return False
        # Bytes: compare_digest refuses non-ASCII strings with a TypeError, and a field is
        # whatever the POST says.
        expected = self._field(cookie, session).encode("ascii")
        return hmac.compare_digest(field_value.encode("utf-8", "surrogatepass"), expected)

    def _field(self, nonce: str, session: str) -> str:
        signature = self._signer.get_signature(f"{nonce}.{session}").decode("ascii")
        return f"{nonce}.{signature}"


def set_csrf_cookie(response: Response, pair: CsrfPair, *, is_https: bool) -> None:
    """Give the browser the nonce if it lacks it; a session cookie scripts cannot read."""
    if pair.is_new:
        response.set_cookie(
            COOKIE_NAME,
            pair.nonce,
            path="/",
            httponly=True,
            samesite="lax",
            secure=is_https,
        )
