"""The editor's login: one password from the environment, a signed expiring session cookie.

There are no accounts: whoever knows DIGEST_EDITOR_PASSWORD is the editor. The session cookie
holds only its issue time, signed with a key made from the app's secret and the password, so
changing either logs every editor out. Login attempts are rate-limited per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

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
_NEXT = re.compile(r"/editor/[A-Za-z0-9/_.?=&%-]*")


class EditorAuth:
    """Checks the password, issues and reads session cookies, counts login attempts."""

    def __init__(
        self,
        *,
        password: str,
        secret_key: str,
        clock: Callable[[], datetime],
        is_https: bool,
        rate_limit: RateLimit = LOGIN_RATE_LIMIT,
    ) -> None:
        if not password:
            raise ValueError(f"{PASSWORD_VARIABLE} is empty: the editor pages stay off")
        self._password = password.encode("utf-8")
        key = hmac.new(secret_key.encode("utf-8"), self._password, hashlib.sha256).hexdigest()
        self._signer = Signer(key, salt="editor-session", digest_method=hashlib.sha256)
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

    def start_session(self, response: Response) -> None:
        issued = int(self._clock().timestamp())
        response.set_cookie(
            SESSION_COOKIE,
            self._signer.sign(str(issued)).decode("ascii"),
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path=EDITOR_PATH,
            httponly=True,
            samesite="lax",
            secure=self.is_https,
        )

    def end_session(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE,
            path=EDITOR_PATH,
            httponly=True,
            samesite="lax",
            secure=self.is_https,
        )

    def is_logged_in(self, request: Request) -> bool:
        """The request carries a session cookie we signed that has not expired."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return False
        try:
            issued = int(self._signer.unsign(cookie).decode("ascii"))
        except (BadSignature, ValueError, UnicodeDecodeError):
            return False
        age = self._clock() - datetime.fromtimestamp(issued, UTC)
        return timedelta(0) <= age < SESSION_LIFETIME


def safe_next(target: str) -> str:
    """Where to go after logging in: an editor page of ours, never another site."""
    return target if _NEXT.fullmatch(target) and "//" not in target else f"{EDITOR_PATH}/"
