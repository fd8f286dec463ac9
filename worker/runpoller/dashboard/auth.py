"""Who may act: the operator token, the session cookie and the CSRF check.

Started without ``RUNPOLLER_DASHBOARD_TOKEN`` the dashboard is read-only: it offers no action
and refuses every POST. With a token, an operator signs in by typing it once; the answer is
a session cookie (``HttpOnly``, ``SameSite=Strict``) holding a random session id and its
HMAC. Every action must then also carry that session's CSRF token in ``X-CSRF-Token``
(another HMAC of the session id, handed out by ``GET /api/session`` to the page itself) and,
when the browser sends one, an ``Origin`` equal to the dashboard's own. The HMAC key is drawn
at start-up: restarting the dashboard, or changing the token, signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque

COOKIE = "runpoller_dashboard"
MIN_TOKEN_LENGTH = 16
MAX_FAILURES = 10
"""Failed sign-ins allowed per :data:`FAILURE_WINDOW_S`, from anyone; then all wait."""
FAILURE_WINDOW_S = 60.0


class TokenError(ValueError):
    """The configured token is unusable (said in one line)."""


def check_token(token: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(
            f"RUNPOLLER_DASHBOARD_TOKEN is {len(token)} characters long: use at least "
            f"{MIN_TOKEN_LENGTH}, e.g. from: openssl rand -base64 24"
        )
    return token


class Guard:
    """Signs sessions in and checks actions; ``token=None``: read-only, every action refused."""

    def __init__(self, token: str | None) -> None:
        self._token = None if token is None else check_token(token).encode()
        self._key = secrets.token_bytes(32)
        self._failures: deque[float] = deque()

    @property
    def actions(self) -> bool:
        return self._token is not None

    def locked_for(self, now: float | None = None) -> float:
        """Seconds until a sign-in may be tried again (0: now): after :data:`MAX_FAILURES`
        failures within :data:`FAILURE_WINDOW_S`, guessing waits for the window to pass."""
        now = time.monotonic() if now is None else now
        while self._failures and now - self._failures[0] > FAILURE_WINDOW_S:
            self._failures.popleft()
        if len(self._failures) < MAX_FAILURES:
            return 0.0
        return FAILURE_WINDOW_S - (now - self._failures[0])

    def sign_in(self, offered: str, now: float | None = None) -> str | None:
        """A new session cookie value when ``offered`` is the token, else None (counted)."""
        if self._token is None or not hmac.compare_digest(offered.encode(), self._token):
            self._failures.append(time.monotonic() if now is None else now)
            return None
        session = secrets.token_urlsafe(18)
        return f"{session}.{self._mac('session', session)}"

    def session(self, cookie: str | None) -> str | None:
        """The session id of a valid cookie (None: not signed in)."""
        if self._token is None or not cookie:
            return None
        session, _, mac = cookie.partition(".")
        if session and hmac.compare_digest(mac, self._mac("session", session)):
            return session
        return None

    def csrf(self, session: str) -> str:
        return self._mac("csrf", session)

    def check_csrf(self, session: str, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered, self.csrf(session))

    def _mac(self, purpose: str, session: str) -> str:
        return hmac.new(self._key, f"{purpose}:{session}".encode(), hashlib.sha256).hexdigest()
