"""Webhook rules: Stripe-compatible signatures, destination checks and the retry schedule."""

import hashlib
import hmac
import ipaddress
import random

import pytest

from synthjobs.rules.webhooks import (
    MAX_RETRY_SECONDS,
    WebhookURLError,
    check_url,
    refused_address,
    retry_delay,
    signature_header,
    verify_signature,
)

SECRET = "whsec_test"


def test_signature_is_stripes_scheme_over_timestamp_dot_body() -> None:
    body = b'{"id":"e1"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature_header(SECRET, body, 1700000000) == f"t=1700000000,v1={expected}"


def test_verification_rejects_a_changed_body_a_wrong_secret_and_an_old_timestamp() -> None:
    header = signature_header(SECRET, b"{}", 1000)
    assert verify_signature(SECRET, b"{}", header, now=1100)
    assert not verify_signature(SECRET, b"{ }", header, now=1100)
    assert not verify_signature("whsec_other", b"{}", header, now=1100)
    assert not verify_signature(SECRET, b"{}", header, now=1000 + 301)
    assert not verify_signature(SECRET, b"{}", "garbage", now=1000)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "https://"),
        ("https://user:pw@example.com/x", "credentials"),
        ("https:///path", "no host"),
        ("https://example.com:99999/x", "port"),
        ("https://example.com/" + "a" * 2000, "longer"),
    ],
)
def test_unusable_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(WebhookURLError, match=reason):
        check_url(url)


def test_internal_addresses_are_refused_unless_allow_listed() -> None:
    def ips(*texts: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [ipaddress.ip_address(t) for t in texts]

    for internal in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fe80::1", "0.0.0.0"):
        assert refused_address("h.example", ips(internal), []) is not None, internal
    assert refused_address("h.example", ips("93.184.216.34"), []) is None
    # One internal address among public ones is enough to refuse (the client may pick it).
    assert refused_address("h.example", ips("93.184.216.34", "10.0.0.1"), []) is not None
    assert refused_address("h.example", [], []) == "h.example does not resolve"
    assert refused_address("h.example", ips("127.0.0.1"), ["127.0.0.1"]) is None
    assert refused_address("h.example", ips("10.9.8.7"), ["10.0.0.0/8"]) is None
    assert refused_address("hooks.internal", ips("10.9.8.7"), ["hooks.internal"]) is None
    assert refused_address("h.example", ips("10.9.8.7"), ["127.0.0.1"]) is not None


def test_retry_delay_grows_exponentially_with_jitter_up_to_a_cap() -> None:
    rng = random.Random(0)
    firsts = [retry_delay(1, rng) for _ in range(50)]
    assert all(5 <= d <= 10 for d in firsts) and len(set(firsts)) > 1
    assert all(40 <= retry_delay(4, rng) <= 80 for _ in range(50))
    assert all(retry_delay(40, rng) <= MAX_RETRY_SECONDS for _ in range(50))
