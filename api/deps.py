"""Per-request dependencies: settings, a database session, the task sender, storage."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from celery import Celery
from fastapi import Depends, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.quota import QuotaGuard
from synthjobs.ledger import idempotency
from synthjobs.ledger.db import get_engine
from synthjobs.ledger.tokens import hash_token, tenant_for_token
from synthjobs.settings import Settings
from synthjobs.storage.base import Storage


# The trivial dependencies are `async def` on purpose: FastAPI runs sync ones in its thread pool, and each
# hop there costs more than reading an attribute.
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def session_factory(settings: Settings) -> sessionmaker[Session]:
    """One sessionmaker per app (per process, after any fork: engines are per pid)."""
    return sessionmaker(get_engine(settings.resolved_database_url()), expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for one request; routes commit explicitly before they enqueue.

    `async` to spare two thread-pool hops per request: opening a session does no I/O (it connects at its
    first query), and closing one that holds no transaction (a submit has committed) gives nothing back to
    the pool. A session still in a transaction is closed in a worker thread (its ROLLBACK is a round trip),
    shielded from cancellation and outside the pool's capacity limit, as FastAPI closes sync dependencies.
    """
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))
        else:
            session.close()


async def get_sender(request: Request) -> Celery:
    return request.app.state.sender  # type: ignore[no-any-return]


async def get_storage(request: Request) -> Storage:
    return request.app.state.storage  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SenderDep = Annotated[Celery, Depends(get_sender)]
StorageDep = Annotated[Storage, Depends(get_storage)]


_token_cache: dict[str, tuple[str, float]] = {}

# Declares the bearer scheme in the OpenAPI document (the Authorize button of /docs, and the token generated
# clients send). `auto_error=False`: a missing or malformed header reaches `get_tenant`, which answers the
# 401 with this API's own body and `WWW-Authenticate` header.
bearer_scheme = HTTPBearer(
    auto_error=False, description="An API token: `synthjobs admin create-token`, or the local token file."
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def get_tenant(
    request: Request, session: SessionDep, settings: SettingsDep, _declared: BearerDep = None
) -> str:
    """The tenant of the request's bearer token; 401 without a valid one (see `tenant_for_request`).

    `async` so that a token verified recently (the token cache) costs no thread-pool hop; only a lookup in
    SQL runs in a worker thread. `_declared` only puts the bearer scheme in the OpenAPI document.
    """
    cached = _cached_tenant(request)
    if cached is not None:
        return cached
    return await run_in_threadpool(tenant_for_request, request, session, settings)


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _cached_tenant(request: Request) -> str | None:
    token = _bearer_token(request)
    if token is None:
        return None
    cached = _token_cache.get(hash_token(token))
    return cached[0] if cached is not None and cached[1] > time.monotonic() else None


def tenant_for_request(request: Request, session: Session, settings: Settings) -> str:
    """The tenant of the request's bearer token; 401 without a valid one.

    A verified token is remembered for `token_cache_seconds` (keyed by its sha256, per process), so a revoked
    token stops working within that time rather than at once, for one query less on every request.
    The token is read from `request`, so a route that calls this directly (the artifact download, which also
    takes signed links) reads it the same way as the `get_tenant` dependency.
    """
    token, tenant = _bearer_token(request), None
    if token is not None:
        key = hash_token(token)
        cached = _token_cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        tenant = tenant_for_token(session, token, settings)
        if tenant is not None and settings.token_cache_seconds > 0:
            _token_cache[key] = (tenant, time.monotonic() + settings.token_cache_seconds)
    if tenant is None:
        raise HTTPException(
            401,
            "a valid 'Authorization: Bearer <token>' header is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]


class IdempotencyRequest:
    """A POST's `Idempotency-Key` (if any) and the fingerprint of the request it came with."""

    def __init__(self, key: str | None, request_sha256: str) -> None:
        self.key, self.request_sha256 = key, request_sha256

    def replay(self, session: Session, tenant: str) -> str | None:
        """The id created by an earlier request with this key; 409 for a different request."""
        if self.key is None:
            return None
        try:
            return idempotency.replay(session, tenant, self.key, self.request_sha256)
        except idempotency.IdempotencyConflict as exc:
            raise HTTPException(409, str(exc)) from exc

    def remember(self, session: Session, tenant: str, resource: str, resource_id: str) -> None:
        if self.key is not None:
            idempotency.remember(session, tenant, self.key, self.request_sha256, resource, resource_id)


async def get_idempotency(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Makes the POST safe to retry: a repeat with the same key and body returns the "
            "first answer; the same key with another body is a 409. 1-200 printable characters.",
        ),
    ] = None,
) -> IdempotencyRequest:
    """The POST's `Idempotency-Key` header, checked here (not by FastAPI) to keep this API's 422 detail."""
    if key is not None and not (1 <= len(key) <= 200 and key.isprintable()):
        raise HTTPException(
            422,
            [
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "1-200 printable characters",
                    "type": "value_error",
                }
            ],
        )
    body = (
        b""
        if key is None or request.headers.get("content-type", "").startswith("multipart/")
        else await request.body()
    )
    return IdempotencyRequest(key, idempotency.digest(request.method, request.url.path, body))


IdempotencyDep = Annotated[IdempotencyRequest, Depends(get_idempotency)]


async def get_quota(request: Request) -> QuotaGuard:
    return request.app.state.quota  # type: ignore[no-any-return]


QuotaDep = Annotated[QuotaGuard, Depends(get_quota)]
