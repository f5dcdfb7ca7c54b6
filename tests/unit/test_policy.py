"""Who is outbound, and which keys sign which message."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.config import TrustConfig
from reputable.keys.keyring import Keyring, build_keyring, missing_algorithms
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.store import StoredKey
from reputable.policy import Envelope, Reason, Source, classify_source, decide
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey

RSA = rsa.generate_private_key(public_exponent=65537, key_size=1024)
ED = ed25519.Ed25519PrivateKey.generate()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stored(
    domain: str, selector: str, algorithm: Algorithm, state: KeyState, day: int = 1
) -> StoredKey:
    private = ED if algorithm is Algorithm.ED25519_SHA256 else RSA
    when = T0.replace(day=day)
    meta = KeyMetadata(algorithm, 256, when, state, when)
    return StoredKey(
        SigningKey(domain, selector, algorithm, private), meta, Path(f"/k/{domain}/{selector}.pem")
    )


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


TRUST = TrustConfig(
    internal_hosts=(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("::1"))
)


@pytest.mark.parametrize(
    ("envelope", "source"),
    [
        (Envelope(ip("192.0.2.7")), Source.INTERNAL),
        (Envelope(ip("::ffff:192.0.2.7")), Source.INTERNAL),
        (Envelope(ip("::1")), Source.INTERNAL),
        (Envelope(ip("198.51.100.1")), Source.EXTERNAL),
        (Envelope(ip("198.51.100.1"), auth_user="alice"), Source.AUTHENTICATED),
        (Envelope(None, local_submission=True), Source.LOCAL),
        (Envelope(None), Source.EXTERNAL),
    ],
)
def test_classify_source(envelope: Envelope, source: Source) -> None:
    assert classify_source(envelope, TRUST) is source


def test_authentication_can_be_distrusted() -> None:
    trust = TrustConfig(internal_hosts=(), authenticated=False)
    assert (
        classify_source(Envelope(ip("198.51.100.1"), auth_user="alice"), trust) is Source.EXTERNAL
    )


def test_keyring_takes_newest_active_key_per_algorithm_in_configured_order() -> None:
    keys = [
        stored("example.com", "old", Algorithm.RSA_SHA256, KeyState.ACTIVE, day=1),
        stored("example.com", "new", Algorithm.RSA_SHA256, KeyState.ACTIVE, day=5),
        stored("example.com", "next", Algorithm.RSA_SHA256, KeyState.PENDING, day=9),
        stored("example.com", "gone", Algorithm.RSA_SHA256, KeyState.RETIRED, day=9),
        stored("example.com", "ed", Algorithm.ED25519_SHA256, KeyState.ACTIVE),
        stored("example.net", "n1", Algorithm.RSA_SHA256, KeyState.ACTIVE),
    ]
    ring = build_keyring(keys, ["example.com"], [Algorithm.ED25519_SHA256, Algorithm.RSA_SHA256])
    assert [k.selector for k in ring.keys_for("example.com")] == ["ed", "new"]
    assert ring.keys_for("example.net") == ()
    rsa_only = build_keyring(keys, ["example.com", "example.org"], [Algorithm.RSA_SHA256])
    assert [k.selector for k in rsa_only.keys_for("example.com")] == ["new"]
    assert missing_algorithms(rsa_only, ["example.com", "example.org"], [Algorithm.RSA_SHA256]) == [
        ("example.org", Algorithm.RSA_SHA256)
    ]


RING = build_keyring(
    [stored("example.com", "s1", Algorithm.RSA_SHA256, KeyState.ACTIVE)],
    ["example.com"],
    [Algorithm.RSA_SHA256],
)


@pytest.mark.parametrize(
    ("source", "from_values", "reason"),
    [
        (Source.EXTERNAL, [b" a@example.com"], Reason.NOT_OUTBOUND),
        (Source.INTERNAL, [], Reason.NO_FROM),
        (Source.INTERNAL, [b" a@example.com", b" b@example.com"], Reason.MULTIPLE_FROM),
        (Source.INTERNAL, [b" a@example.com, b@example.net"], Reason.MULTIPLE_AUTHOR_DOMAINS),
        (Source.INTERNAL, [b" a@"], Reason.FROM_UNPARSABLE),
        (Source.LOCAL, [b" a@example.org"], Reason.DOMAIN_NOT_SIGNED),
        (Source.AUTHENTICATED, [b" a@example.net"], Reason.NO_KEY),
    ],
)
def test_not_signed_with_reason(source: Source, from_values: list[bytes], reason: Reason) -> None:
    verdict = decide(source, from_values, ["example.com", "example.net"], RING)
    assert verdict.keys == ()
    assert verdict.reason is reason


def test_signed_for_outbound_mail_of_our_domain() -> None:
    for source in (Source.INTERNAL, Source.AUTHENTICATED, Source.LOCAL, Source.FILTER):
        verdict = decide(source, [b" Alice <alice@EXAMPLE.com>"], ["example.com"], RING)
        assert [k.selector for k in verdict.keys] == ["s1"]
        assert verdict.reason is None
        assert verdict.from_domain == "example.com"


def test_empty_keyring_signs_nothing() -> None:
    verdict = decide(Source.INTERNAL, [b" a@example.com"], ["example.com"], Keyring())
    assert verdict.reason is Reason.NO_KEY
