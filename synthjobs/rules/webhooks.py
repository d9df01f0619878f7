"""Webhook rules, pure: event types, Stripe-style signatures, destination checks and the retry schedule.

The signature follows Stripe's scheme (`t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`) so users can verify
with existing code; it is written here because it is ten lines of `hmac`, not worth a dependency. The
destination check is ours: a webhook is a request the service makes on a tenant's behalf, so a URL must not
reach the deployment's own network (loopback, private, link-local, ...) unless the operator allow-lists it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import secrets
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

EVENT_TYPES = ("job.succeeded", "job.failed", "job.cancelled", "model.promoted")
SIGNATURE_HEADER = "Synthjobs-Signature"
MAX_URL_LENGTH = 2000
FIRST_RETRY_SECONDS = 10.0
MAX_RETRY_SECONDS = 3600.0

_JITTER = secrets.SystemRandom()
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookURLError(ValueError):
    """A webhook URL that cannot or may not be delivered to; the message says why."""


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, body: bytes, header: str, now: int, tolerance: int = 300) -> bool:
    """True when `header` signs `body` with `secret` within `tolerance` seconds of `now` (for tests, docs)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = signature_header(secret, body, timestamp).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, parts.get("v1", ""))


def check_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL with no credentials; WebhookURLError naming what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookURLError(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6] host, say: a 422, not an internal error
        raise WebhookURLError(f"URL cannot be parsed: {exc}") from exc
    if parts.scheme not in ("https", "http"):
        raise WebhookURLError("URL must start with https:// (or http://)")
    if parts.username is not None or parts.password is not None:
        raise WebhookURLError("URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookURLError("URL has an invalid port") from exc
    if not parts.hostname:
        raise WebhookURLError("URL has no host")
    return parts.hostname, port


def parse_allow_list(
    entries: Iterable[str],
) -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """Split an allow list into host names and networks (an address counts as a /32 or /128)."""
    names: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    return names, networks


def refused_address(host: str, addresses: Sequence[IPAddress], allow: Iterable[str]) -> str | None:
    """Why delivery to `host` (resolved to `addresses`) is refused, or None when every address may be used.

    Checked at registration and again at each delivery, on the freshly resolved addresses, so a name that
    re-resolves to an internal address (DNS rebinding) is refused then.
    """
    names, networks = parse_allow_list(allow)
    if host.lower().rstrip(".") in names:
        return None
    if not addresses:
        return f"{host} does not resolve"
    for address in addresses:
        if any(address in net for net in networks if net.version == address.version):
            continue
        if not address.is_global or address.is_multicast:
            return f"{host} resolves to {address}, a private, loopback or link-local address"
    return None


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failures: exponential, capped, with full jitter."""
    ceiling = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0))
    return (rng or _JITTER).uniform(ceiling / 2, ceiling)
