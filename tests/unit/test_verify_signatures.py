"""DKIM verification against signatures made by dkimpy (the reference) and by reputable."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.keys.record import record_value
from reputable.signing.algorithm import Algorithm
from reputable.signing.canonicalization import Canonicalization
from reputable.signing.rawmessage import parse_message
from reputable.signing.signature import SigningKey
from reputable.signing.signer import MessageSigner, SigningPolicy
from reputable.verify.signatures import (
    MAX_SIGNATURES,
    DkimResult,
    DkimVerifier,
    KeyUnavailable,
    SignatureResult,
)

DOMAIN = b"example.com"
MESSAGE = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: the report\r\n"
    b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <r1@example.com>\r\n\r\n"
    b"Hello Bob,\r\n  here  is the report.\t\r\n\r\n\r\n"
)
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED = ed25519.Ed25519PrivateKey.generate()
RSA_PEM = RSA.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
ED_SEED = base64.b64encode(
    ED.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
)
RECORDS = {
    ("rsa1", "example.com"): [record_value(Algorithm.RSA_SHA256, RSA)],
    ("ed1", "example.com"): [record_value(Algorithm.ED25519_SHA256, ED)],
}


def lookup(selector: str, domain: str) -> Sequence[str]:
    return RECORDS.get((selector, domain), [])


def sign(message: bytes, selector: bytes = b"rsa1", **options: object) -> bytes:
    key = ED_SEED if selector.startswith(b"ed") else RSA_PEM
    algorithm = b"ed25519-sha256" if selector.startswith(b"ed") else b"rsa-sha256"
    signature: bytes = dkim.sign(
        message, selector, DOMAIN, key, signature_algorithm=algorithm, **options
    )
    return signature + message


def verify(message: bytes, chunk: int = 7, keys: object = lookup) -> list[SignatureResult]:
    parsed = parse_message(message)
    verifier = DkimVerifier(parsed.fields)
    for start in range(0, len(parsed.body), chunk):
        verifier.body(parsed.body[start : start + chunk])
    return verifier.results(keys)  # type: ignore[arg-type]


@pytest.mark.parametrize("selector", [b"rsa1", b"ed1"])
@pytest.mark.parametrize(
    "canon", [(b"simple", b"simple"), (b"relaxed", b"relaxed"), (b"relaxed", b"simple")]
)
def test_what_dkimpy_signs_verifies(selector: bytes, canon: tuple[bytes, bytes]) -> None:
    (result,) = verify(sign(MESSAGE, selector, canonicalize=canon))
    assert (result.result, result.reason) == (DkimResult.PASS, "")
    assert (result.domain, result.selector) == ("example.com", selector.decode())


def test_several_signatures_each_get_a_result_and_at_most_five_are_verified() -> None:
    both = sign(sign(MESSAGE, b"rsa1"), b"ed1")
    assert [r.result for r in verify(both)] == [DkimResult.PASS, DkimResult.PASS]
    many = MESSAGE
    for _ in range(MAX_SIGNATURES + 2):
        many = sign(many, b"ed1")
    assert len(verify(many)) == MAX_SIGNATURES


def test_a_tampered_body_or_header_fails() -> None:
    signed = sign(MESSAGE, canonicalize=(b"relaxed", b"relaxed"))
    (body,) = verify(signed.replace(b"the report.", b"the rep0rt."))
    assert (body.result, body.reason) == (DkimResult.FAIL, "body hash did not verify")
    (head,) = verify(signed.replace(b"Subject: the report", b"Subject: the rep0rt"))
    assert (head.result, head.reason) == (DkimResult.FAIL, "signature did not verify")
    # Relaxed canonicalization: whitespace changes in the body are no tampering.
    (spaces,) = verify(signed.replace(b"here  is", b"here is"))
    assert spaces.result is DkimResult.PASS


def test_l_limits_what_is_signed_and_says_so() -> None:
    signed = sign(MESSAGE, canonicalize=(b"relaxed", b"simple"), length=True)
    (whole,) = verify(signed)
    assert whole.result is DkimResult.PASS and whole.body_length is not None
    (appended,) = verify(signed + b"Click here.\r\n")
    assert appended.result is DkimResult.PASS
    assert appended.reason.startswith(f"l={appended.body_length}: ")


def test_a_missing_revoked_or_other_key_and_a_dns_failure() -> None:
    signed = sign(MESSAGE)

    def revoked(selector: str, domain: str) -> Sequence[str]:
        return ["v=DKIM1; k=rsa; p="]

    def other(selector: str, domain: str) -> Sequence[str]:
        return [record_value(Algorithm.RSA_SHA256, rsa.generate_private_key(65537, 2048))]

    def ed_record(selector: str, domain: str) -> Sequence[str]:
        return RECORDS[("ed1", "example.com")]

    def timeout(selector: str, domain: str) -> Sequence[str]:
        raise KeyUnavailable("timeout")

    expected = {
        lambda s, d: []: (DkimResult.PERMERROR, "no key record"),
        revoked: (DkimResult.FAIL, "key revoked"),
        other: (DkimResult.FAIL, "signature did not verify"),
        ed_record: (DkimResult.PERMERROR, "key record k=ed25519 for a=rsa-sha256"),
        timeout: (DkimResult.TEMPERROR, "key not fetched: timeout"),
    }
    for keys, outcome in expected.items():
        (result,) = verify(signed, keys=keys)
        assert (result.result, result.reason) == outcome


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ((b"a=rsa-sha256", b"a=rsa-sha1"), "a=rsa-sha1: not accepted (RFC 8301)"),
        ((b"v=1;", b"v=2;"), "v=2: not 1"),
        ((b" d=example.com;", b" d=example.com; d=example.org;"), "the tag d= twice"),
    ],
)
def test_a_signature_that_cannot_be_used_is_a_permerror(
    change: tuple[bytes, bytes], reason: str
) -> None:
    signed = sign(MESSAGE)
    assert change[0] in signed
    (result,) = verify(signed.replace(change[0], change[1], 1))
    assert (result.result, result.reason) == (DkimResult.PERMERROR, reason)


def test_an_unsigned_message_has_no_results() -> None:
    assert verify(MESSAGE) == []


@pytest.mark.parametrize("canon", list(Canonicalization))
def test_what_reputable_signs_verifies_oversigned_and_dual(canon: Canonicalization) -> None:
    keys = [
        SigningKey("example.com", "rsa1", Algorithm.RSA_SHA256, RSA),
        SigningKey("example.com", "ed1", Algorithm.ED25519_SHA256, ED),
    ]
    policy = SigningPolicy(
        header_canon=canon,
        body_canon=canon,
        headers=("from", "to", "subject", "date", "message-id", "cc"),
        oversign=("from", "subject"),
    )
    parsed = parse_message(MESSAGE)
    signer = MessageSigner(keys, policy)
    for field in parsed.fields:
        signer.header(field)
    signer.body(parsed.body)
    signed = (
        b"".join(s.name + b":" + s.value + b"\r\n" for s in signer.signatures(1_796_000_000))
        + MESSAGE
    )
    assert [(r.result, r.selector) for r in verify(signed)] == [
        (DkimResult.PASS, "rsa1"),
        (DkimResult.PASS, "ed1"),
    ]
    # Oversigned: a second Subject added on the way breaks both.
    added = signed.replace(b"Subject: the report", b"Subject: the report\r\nSubject: win", 1)
    assert {r.result for r in verify(added)} == {DkimResult.FAIL}
