"""Dashboard sessions: an API token exchanged for a signed, HttpOnly, SameSite=Lax cookie, and CSRF tokens.

The cookie holds the token's sha256 (never the token) and a random session id, signed with itsdangerous
under `SYNTHJOBS_UI_SECRET`; every request checks the hash against the tokens table again, so revoking the
API token ends its dashboard sessions too. The CSRF token of a session is an HMAC of its session id, sent in
a hidden field of every state-changing form: a cross-site page cannot read it, and SameSite=Lax keeps the
cookie off cross-site POSTs as a second line.

The login form, which has no session yet, is protected the same way before one exists (login CSRF: a
cross-site page must not log a victim in as the attacker): its GET sets a random pre-session cookie and
puts an HMAC of it in the form; a login POST whose field does not match its cookie is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from synthjobs.rules.artifacts import local_secret
from synthjobs.settings import Settings

COOKIE = "synthjobs_session"
LOGIN_COOKIE = "synthjobs_login"
UI_SECRET_FILE = "ui-secret"


@dataclass(frozen=True)
class UiSession:
    """A verified cookie: whose token it came from, and the id its CSRF token is bound to."""

    token_sha256: str
    session_id: str


def ui_secret(settings: Settings) -> bytes | None:
    """The configured secret; the embedded default's generated one; None in production without one."""
    if settings.ui_secret is not None:
        return settings.ui_secret.get_secret_value().encode()
    if settings.is_production():
        return None
    return local_secret(settings.make_home() / UI_SECRET_FILE)


class SessionSigner:
    """Makes and reads session cookies and CSRF tokens under one secret."""

    def __init__(self, secret: bytes, max_age_seconds: float) -> None:
        self.secret, self.max_age = secret, int(max_age_seconds)
        self.serializer = URLSafeTimedSerializer(secret, salt="synthjobs-ui-session")

    def new_cookie(self, token_sha256: str) -> str:
        return self.serializer.dumps({"t": token_sha256, "s": secrets.token_urlsafe(16)})

    def read_cookie(self, value: str | None) -> UiSession | None:
        """The session a cookie carries; None when absent, tampered with, malformed or expired."""
        if not value or len(value) > 1000:
            return None
        try:
            data = self.serializer.loads(value, max_age=self.max_age)
        except BadSignature:
            return None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("t"), str)
            or not isinstance(data.get("s"), str)
        ):
            return None
        return UiSession(token_sha256=data["t"], session_id=data["s"])

    def csrf_token(self, session: UiSession) -> str:
        message = f"csrf:{session.session_id}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def csrf_valid(self, session: UiSession, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf_token(session), token)

    @staticmethod
    def login_nonce() -> str:
        """A fresh pre-session cookie value for the login form."""
        return secrets.token_urlsafe(16)

    def login_csrf_token(self, nonce: str) -> str:
        """The login form's CSRF token: bound to its pre-session cookie, unforgeable without the secret."""
        return hmac.new(self.secret, f"login-csrf:{nonce}".encode(), hashlib.sha256).hexdigest()

    def login_csrf_valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token or len(nonce) > 100:
            return False
        return hmac.compare_digest(self.login_csrf_token(nonce), token)
