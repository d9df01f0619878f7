"""The webhook deliverer: sends the outbox's due rows, signed, and records every attempt.

Run by each reconciler pass (so the embedded default delivers too, from its worker). At-least-once: a row
is marked delivered only after a 2xx answer, so a deliverer killed mid-POST leaves it pending and the next
pass sends it again with the same event id and body. Redirects are not followed; the destination is resolved
and checked again before every attempt (a name may re-resolve to an internal address).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from synthjobs.ledger import webhooks
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import utcnow
from synthjobs.rules.webhooks import (
    SIGNATURE_HEADER,
    IPAddress,
    WebhookURLError,
    check_url,
    refused_address,
    retry_delay,
    signature_header,
)
from synthjobs.settings import Settings

log = logging.getLogger(__name__)
Resolver = Callable[[str, int], list[IPAddress]]


@dataclass(frozen=True)
class Attempt:
    """One try's outcome: the HTTP status (None when no answer came) and an error for people."""

    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to now (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def allow_list(settings: Settings) -> list[str]:
    """The deployment's allow-listed hosts and networks."""
    return [entry for entry in settings.webhook_allow_hosts.split(",") if entry.strip()]


def destination_problem(url: str, settings: Settings, resolver: Resolver = resolve) -> str | None:
    """Why `url` may not be delivered to now, or None (used at registration and before each attempt)."""
    try:
        host, port = check_url(url)
    except WebhookURLError as exc:
        return str(exc)
    return refused_address(host, resolver(host, port), allow_list(settings))


def deliver_due(
    settings: Settings, resolver: Resolver = resolve, limit: int = 100, now: datetime | None = None
) -> list[str]:
    """One pass: try every delivery due at `now` (default: now) once; return the ids of those delivered."""
    url = settings.resolved_database_url()
    now = now or utcnow()
    lease = now + timedelta(seconds=2 * settings.webhook_timeout + 30)  # a killed pass frees them later
    with session_scope(url) as session:
        due = webhooks.claim_due(session, now, lease, limit)
    delivered = []
    for item in due:
        attempt = _post(item.url, item.body, item.secret, settings, resolver)
        with session_scope(url) as session:
            row = webhooks.record_attempt(
                session,
                item.id,
                attempt.status,
                attempt.error,
                retry_window=timedelta(hours=settings.webhook_retry_hours),
                next_delay=retry_delay,
                now=now,
            )
        if attempt.ok:
            delivered.append(item.id)
        elif row is not None:
            log.info("webhook delivery %s failed (attempt %d): %s", item.id, row.attempts, attempt.error)
    return delivered


def _post(target: str, body: bytes, secret: str, settings: Settings, resolver: Resolver) -> Attempt:
    problem = destination_problem(target, settings, resolver)
    if problem is not None:
        return Attempt(None, f"refused: {problem}")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "synthjobs-webhooks/1",
        SIGNATURE_HEADER: signature_header(secret, body, int(time.time())),
    }
    try:
        response = httpx.post(
            target, content=body, headers=headers, timeout=settings.webhook_timeout, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500])
    return Attempt(response.status_code, None if response.is_success else f"HTTP {response.status_code}")
