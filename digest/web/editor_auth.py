"""The editor's login: one password from the environment, sessions kept in the database.

There are no accounts: whoever knows DIGEST_EDITOR_PASSWORD is the editor. Logging in starts a
session: a random id in the browser's cookie, signed with a key made from the app's secret and
the password (changing either logs every editor out), and its SHA-256 in the editor_sessions
table. A session lasts SESSION_LIFETIME; logging out deletes its row, so a copied cookie stops
working at once, and "log out everywhere" deletes them all. Login attempts are rate-limited per
client address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from itsdangerous import BadSignature, Signer
from starlette.requests import Request
from starlette.responses import Response

from digest.web.ratelimit import RateLimit, TokenBuckets, client_key

PASSWORD_VARIABLE = "DIGEST_EDITOR_PASSWORD"
SESSION_COOKIE = "digest_editor"
# An editor's working day; after that the browser asks for the password again.
SESSION_LIFETIME = timedelta(hours=12)
# Five tries at once, then one a minute per client address: a guesser gets ~1,440 a day.
LOGIN_RATE_LIMIT = RateLimit(burst=5, refill_seconds=60)
# Every editor URL is under this path, and so is the session cookie.
EDITOR_PATH = "/editor"
# The path takes no dots or escapes ("/editor/.." is the site's root, and browsers read "%2e"
# as a dot); the query may hold them.
_NEXT = re.compile(r"/editor/[A-Za-z0-9/_-]*(\?[A-Za-z0-9/_.=&%-]*)?")
# secrets.token_urlsafe(32): 256 random bits in 43 characters.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


class SessionStore(Protocol):
    """Where sessions live (digest.store.Store); it sees only hashes of their ids."""

    def create_editor_session(self, id_hash: str, *, now: datetime, expires: datetime) -> None: ...

    def is_editor_session(self, id_hash: str, *, now: datetime) -> bool: ...

    def end_editor_sessions(self, id_hash: str | None = None) -> int: ...


class EditorAuth:
    """Checks the password, starts, finds and ends sessions, counts login attempts."""

    def __init__(
        self,
        *,
        password: str,
        secret_key: str,
        sessions: SessionStore,
        clock: Callable[[], datetime],
        is_https: bool,
        rate_limit: RateLimit = LOGIN_RATE_LIMIT,
    ) -> None:
        if not password:
            raise ValueError(f"{PASSWORD_VARIABLE} is empty: the editor pages stay off")
        self._password = password.encode("utf-8")
        key = hmac.new(secret_key.encode("utf-8"), self._password, hashlib.sha256).hexdigest()
        self._signer = Signer(key, salt="editor-session", digest_method=hashlib.sha256)
        self._sessions = sessions
        self._clock = clock
        self.is_https = is_https
        self._attempts = TokenBuckets(rate_limit)

    def wait_before_attempt(self, request: Request) -> float:
        """Spend one login attempt: 0 when it may go ahead, else the seconds to wait.

        Every attempt counts, not only failures: checking the password first would tell a
        guesser whether a guess was right even while they are being held back.
        """
        host = request.client.host if request.client else None
        return self._attempts.take(client_key(host), self._clock())

    def is_password(self, attempt: str) -> bool:
        # compare_digest takes as long whatever the first differing byte is.
        return hmac.compare_digest(attempt.encode("utf-8"), self._password)

    def start_session(self, request: Request, response: Response) -> None:
        """Record a new session and give the browser its cookie; a session the browser held
        before ends, so logging in twice leaves no second live cookie behind."""
        previous = self._session_id(request)
        if previous is not None:
            self._sessions.end_editor_sessions(_hashed(previous))
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        self._sessions.create_editor_session(
            _hashed(session_id), now=now, expires=now + SESSION_LIFETIME
        )
        response.set_cookie(
            SESSION_COOKIE,
            self._signer.sign(session_id).decode("ascii"),
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path=EDITOR_PATH,
            httponly=True,
            samesite="lax",
            secure=self.is_https,
        )

    def end_session(self, request: Request, response: Response, *, everywhere: bool) -> int:
        """End this browser's session (or every session) and drop its cookie; how many ended."""
        session_id = self._session_id(request)
        ended = 0
        if everywhere:
            ended = self._sessions.end_editor_sessions()
        elif session_id is not None:
            ended = self._sessions.end_editor_sessions(_hashed(session_id))
        response.delete_cookie(
            SESSION_COOKIE,
            path=EDITOR_PATH,
            httponly=True,
            samesite="lax",
            secure=self.is_https,
        )
        return ended

    def is_logged_in(self, request: Request) -> bool:
        """The request's cookie names a session we signed that has neither ended nor expired."""
        session_id = self._session_id(request)
        if session_id is None:
            return False
        return self._sessions.is_editor_session(_hashed(session_id), now=self._clock())

    def csrf_binding(self, request: Request) -> str:
        """What the editor's CSRF tokens are tied to: this browser's session ("" without one).

        A hash, never the id: the value goes into a signature on every page."""
        session_id = self._session_id(request)
        if session_id is None:
            return ""
        return hashlib.sha256(f"csrf:{session_id}".encode("ascii")).hexdigest()

    def _session_id(self, request: Request) -> str | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            session_id = self._signer.unsign(cookie).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return None
        return session_id if _SESSION_ID.fullmatch(session_id) else None


def _hashed(session_id: str) -> str:
    # The table holds only this: reading the database does not give anyone a session.
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def safe_next(target: str) -> str:
    """Where to go after logging in: an editor page of ours, never another site."""
    return target if _NEXT.fullmatch(target) and "//" not in target else f"{EDITOR_PATH}/"
