"""API tokens: random bearer tokens that each belong to one tenant, stored only as their sha256.

`SYNTHJOBS_ADMIN_TOKEN` is accepted too (as the tenant `SYNTHJOBS_ADMIN_TENANT`), so a fresh deployment can be
used before any token exists; `synthjobs admin create-token --tenant NAME` makes tenant tokens (it needs
direct database access, not the API). On the embedded default, `synthjobs api` creates a local admin token in
`$SYNTHJOBS_HOME/api-token` (mode 0600) that the CLI and client pick up by themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from synthjobs.ledger.db import execute_dml
from synthjobs.ledger.tables import ApiToken, utcnow
from synthjobs.settings import Settings

TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"
TOKEN_FILE = "api-token"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, tenant: str, label: str = "") -> str:
    """A new token for `tenant`; the caller shows it once, only its hash is kept."""
    token = "sj_" + secrets.token_urlsafe(32)
    session.add(ApiToken(tenant=tenant, label=label, token_sha256=hash_token(token)))
    session.flush()
    return token


def revoke_token(session: Session, token: str) -> bool:
    """Revoke a token by its value; False when it was unknown or already revoked."""
    query = update(ApiToken).where(ApiToken.token_sha256 == hash_token(token), ApiToken.revoked_at.is_(None))
    return execute_dml(session, query.values(revoked_at=utcnow())) == 1


def tenant_for_token(session: Session, token: str, settings: Settings) -> str | None:
    """The tenant a bearer token acts for, or None for an unknown or revoked token."""
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return settings.admin_tenant
    row = session.scalar(
        select(ApiToken.tenant).where(
            ApiToken.token_sha256 == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )
    return row


def local_token(settings: Settings, *, create: bool) -> str | None:
    """The embedded default's admin token file under home: read it, or create it (0600) when asked."""
    path = Path(settings.home).resolve() / TOKEN_FILE
    if path.exists():
        return path.read_text().strip() or None
    if not create:
        return None
    settings.make_home()
    token = "sj_local_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def tenant_for_token_hash(session: Session, token_sha256: str, settings: Settings) -> str | None:
    """`tenant_for_token` for a token known only by its sha256 (a dashboard session keeps no token)."""
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    if admin and hmac.compare_digest(token_sha256, hash_token(admin)):
        return settings.admin_tenant
    return session.scalar(
        select(ApiToken.tenant).where(ApiToken.token_sha256 == token_sha256, ApiToken.revoked_at.is_(None))
    )
