"""ARC chain validation against chains sealed by dkimpy (the reference), which also verifies
each message built here, so both verifiers are seen to agree."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reputable.keys.record import record_value
from reputable.signing.algorithm import Algorithm
from reputable.signing.headers import HeaderField
from reputable.signing.rawmessage import parse_message, render_message
from reputable.verify.arc import ArcResult, ArcVerdict, ArcVerifier
from reputable.verify.signatures import KeyLookup, KeyUnavailable

# dkimpy's ARC signer reads the Authentication-Results fields with authres; without it
# arc_sign dies of a NameError, so say plainly what is missing.
if importlib.util.find_spec("authres") is None:
    raise ImportError("the ARC tests need authres, which dkimpy's ARC signer uses")


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


FIRST_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SECOND_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RECORDS = {
    ("arc1", "example.org"): [record_value(Algorithm.RSA_SHA256, FIRST_KEY)],
    ("arc2", "example.net"): [record_value(Algorithm.RSA_SHA256, SECOND_KEY)],
}
# (selector, d=, private key, authserv-id): the mail exchanger, then a relay (a mailing list).
# The relay writes its d= in mixed case: the verdict reports it in lower case.
FIRST_HOP = (b"arc1", b"example.org", _pem(FIRST_KEY), b"mx.example.org")
SECOND_HOP = (b"arc2", b"Example.NET", _pem(SECOND_KEY), b"relay.example.net")
SIGNED = [b"from", b"to", b"subject", b"date", b"message-id"]
MESSAGE = (
    b"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.com;\r\n"
    b" dkim=pass header.d=example.com\r\n"
    b"From: Alice <alice@example.com>\r\nTo: team@example.net\r\nSubject: the report\r\n"
    b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <r1@example.com>\r\n\r\n"
    b"Hello team,\r\n  here  is the report.\t\r\n\r\n\r\n"
)
RELAY_RESULTS = b"Authentication-Results: relay.example.net; arc=pass header.oldest-pass=0\r\n"


def lookup(selector: str, domain: str) -> Sequence[str]:
    return RECORDS.get((selector, domain), [])


class Counting:
    """The test lookup, noting each (selector, domain) it is asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, selector: str, domain: str) -> Sequence[str]:
        self.calls.append((selector, domain))
        return lookup(selector, domain)


def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
    """dkimpy's view of the same records."""
    selector, _, domain = name.decode("ascii").rstrip(".").partition("._domainkey.")
    found = lookup(selector, domain.lower())
    return found[0].encode("ascii") if found else None


def seal(message: bytes, hop: tuple[bytes, bytes, bytes, bytes]) -> bytes:
    selector, domain, key, srv_id = hop
    lines: list[bytes] = dkim.arc_sign(message, selector, domain, key, srv_id, SIGNED)
    assert lines, "dkimpy sealed nothing"
    return b"".join(lines) + message


def one_hop() -> bytes:
    return seal(MESSAGE, FIRST_HOP)


def two_hops(relay: Callable[[bytes], bytes] = lambda message: message) -> bytes:
    """Sealed by the mail exchanger, changed by `relay`, then sealed by the relay."""
    return seal(RELAY_RESULTS + relay(one_hop()), SECOND_HOP)


def verify(message: bytes, chunk: int = 7, keys: KeyLookup = lookup) -> ArcVerdict:
    verifier = ArcVerifier(parse_message(message).fields)
    return feed(verifier, message, chunk).result(keys)


def feed(verifier: ArcVerifier, message: bytes, chunk: int = 7) -> ArcVerifier:
    body = parse_message(message).body
    for start in range(0, len(body), chunk):
        verifier.body(body[start : start + chunk])
    return verifier


def dkimpy(message: bytes) -> str:
    """dkimpy's chain status. It calls a chain whose newest seal says cv=fail ended (None),
    which RFC 8617 §5.2 step 2 reports as fail."""
    status, _, _ = dkim.arc_verify(message, dnsfunc=dnsfunc)
    return "fail" if status is None else str(status.decode("ascii"))


def replace_after(message: bytes, anchor: bytes, old: bytes, new: bytes) -> bytes:
    """`message` with the first `old` after `anchor` turned into `new`."""
    at = message.index(old, message.index(anchor))
    return message[:at] + new + message[at + len(old) :]


def edit_fields(message: bytes, change: Callable[[list[HeaderField]], list[HeaderField]]) -> bytes:
    parsed = parse_message(message)
    return render_message(change(list(parsed.fields)), parsed.body)


def is_part(field: HeaderField, name: bytes, instance: int) -> bool:
    return field.key == name and field.value.lstrip().startswith(b"i=%d;" % instance)


def without(name: bytes, instance: int) -> Callable[[list[HeaderField]], list[HeaderField]]:
    return lambda fields: [f for f in fields if not is_part(f, name, instance)]


def changed_subject(message: bytes) -> bytes:
    return message.replace(b"Subject: the report", b"Subject: [team] the report")


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_a_one_hop_chain_passes(chunk: int) -> None:
    message = one_hop()
    verdict = verify(message, chunk)
    assert (verdict.result, verdict.reason) == (ArcResult.PASS, "")
    assert (verdict.instances, verdict.signer) == (1, "example.org")
    assert verdict.aar.startswith("i=1;") and "mx.example.org" in verdict.aar
    assert "\n" not in verdict.aar
    assert dkimpy(message) == "pass"


@pytest.mark.parametrize(
    "relay",
    [
        lambda message: message,
        lambda message: b"List-Id: <team.example.net>\r\n" + message,
        changed_subject,  # breaks the first AMS, which only the newest one replaces
    ],
    ids=["kept-as-is", "header-added", "subject-changed"],
)
def test_a_two_hop_chain_passes(relay: Callable[[bytes], bytes]) -> None:
    message = two_hops(relay)
    verdict = verify(message)
    assert (verdict.result, verdict.reason) == (ArcResult.PASS, "")
    assert (verdict.instances, verdict.signer) == (2, "example.net")
    assert verdict.aar.startswith("i=2;") and "relay.example.net" in verdict.aar
    assert dkimpy(message) == "pass"


@pytest.mark.parametrize("build", [one_hop, two_hops], ids=["one-hop", "two-hops"])
def test_a_body_changed_after_the_last_seal_fails(build: Callable[[], bytes]) -> None:
    message = build().replace(b"here  is the report", b"here is another report")
    verdict = verify(message)
    assert verdict.result is ArcResult.FAIL
    assert verdict.reason.startswith("ARC-Message-Signature i=") and "body hash" in verdict.reason
    assert dkimpy(message) == "fail"


@pytest.mark.parametrize("build", [one_hop, two_hops], ids=["one-hop", "two-hops"])
def test_a_field_the_newest_ams_signed_changed_fails(build: Callable[[], bytes]) -> None:
    sealed = build()
    message = changed_subject(sealed)
    assert message != sealed
    verdict = verify(message)
    assert verdict.result is ArcResult.FAIL
    assert verdict.reason.endswith("signature did not verify")
    assert verdict.reason.startswith("ARC-Message-Signature i=")
    assert dkimpy(message) == "fail"


def test_a_field_no_ams_signed_may_be_added_after_the_last_seal() -> None:
    message = b"Received: from relay.example.net by mail.example.com\r\n" + two_hops()
    assert verify(message).result is ArcResult.PASS
    assert dkimpy(message) == "pass"


@pytest.mark.parametrize(
    ("anchor", "old", "new", "reason"),
    [
        (b"ARC-Seal: i=2;", b"cv=pass", b"cv=none", "ARC-Seal i=2 says cv=none, not pass"),
        (b"ARC-Seal: i=1;", b"cv=none", b"cv=pass", "ARC-Seal i=1 says cv=pass, not none"),
        (b"ARC-Seal: i=2;", b"cv=pass", b"cv=fail", "ARC-Seal i=2 says cv=fail"),
    ],
)
def test_a_seal_whose_cv_was_altered_fails(
    anchor: bytes, old: bytes, new: bytes, reason: str
) -> None:
    message = replace_after(two_hops(), anchor, old, new)
    verdict = verify(message)
    assert verdict.result is ArcResult.FAIL
    assert verdict.reason.startswith(reason)
    assert dkimpy(message) == "fail"


def test_an_older_aar_changed_breaks_the_seals_that_cover_it() -> None:
    """The first AAR is signed by no AMS: only the seals protect it."""
    message = replace_after(
        two_hops(), b"ARC-Authentication-Results: i=1;", b"spf=pass", b"spf=none"
    )
    verdict = verify(message)
    assert (verdict.result, verdict.reason) == (
        ArcResult.FAIL,
        "ARC-Seal i=2: signature did not verify",
    )
    assert dkimpy(message) == "fail"


def test_an_older_seal_that_does_not_verify_fails() -> None:
    """The first hop's key replaced by another: the newest set still verifies, the first
    seal does not, and that alone fails the chain."""
    other = {("arc1", "example.org"): [record_value(Algorithm.RSA_SHA256, SECOND_KEY)]}

    def other_first_key(selector: str, domain: str) -> Sequence[str]:
        return other.get((selector, domain)) or lookup(selector, domain)

    verdict = verify(two_hops(), keys=other_first_key)
    assert (verdict.result, verdict.reason) == (
        ArcResult.FAIL,
        "ARC-Seal i=1: signature did not verify",
    )


@pytest.mark.parametrize(
    ("change", "reason", "instances"),
    [
        (
            lambda fields: [f for f in fields if not f.value.lstrip().startswith(b"i=1;")],
            "no ARC set i=1",
            1,
        ),
        (without(b"arc-message-signature", 1), "no ARC-Message-Signature i=1", 2),
        (without(b"arc-authentication-results", 2), "no ARC-Authentication-Results i=2", 2),
        (
            lambda fields: [*[f for f in fields if is_part(f, b"arc-seal", 1)], *fields],
            "more than one ARC-Seal i=1",
            2,
        ),
    ],
    ids=["set-1-removed", "ams-1-removed", "aar-2-removed", "seal-1-twice"],
)
def test_a_missing_or_duplicated_part_fails(
    change: Callable[[list[HeaderField]], list[HeaderField]], reason: str, instances: int
) -> None:
    original = two_hops()
    message = edit_fields(original, change)
    assert message != original
    verdict = verify(message)
    assert (verdict.result, verdict.reason) == (ArcResult.FAIL, reason)
    assert (verdict.instances, verdict.signer) == (instances, "example.net")
    assert dkimpy(message) == "fail"


def test_no_key_is_looked_up_for_a_chain_broken_in_its_structure() -> None:
    fields = parse_message(edit_fields(two_hops(), without(b"arc-seal", 1))).fields
    counting = Counting()
    verifier = ArcVerifier(fields)
    assert verifier.keys_needed() == []
    assert verifier.result(counting).reason == "no ARC-Seal i=1"
    assert counting.calls == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            b" i=51; cv=pass; a=rsa-sha256; d=example.net; s=arc2; b=AAAA",
            "ARC-Seal i=51: not an instance from 1 to 50",
        ),
        (
            b" cv=none; a=rsa-sha256; d=example.net; s=arc2; b=AAAA",
            "ARC-Seal i=?: not an instance from 1 to 50",
        ),
        (b" i=1; i=1; cv=none", "ARC-Seal: the tag i= twice"),
    ],
)
def test_an_unreadable_seal_fails(value: bytes, reason: str) -> None:
    message = b"ARC-Seal:" + value + b"\r\n" + one_hop()
    verdict = verify(message)
    assert (verdict.result, verdict.reason) == (ArcResult.FAIL, reason)
    assert verdict.signer == "example.org"  # the newest readable seal


def test_a_message_without_arc_fields_is_none() -> None:
    def no_lookup(selector: str, domain: str) -> Sequence[str]:
        raise AssertionError(f"looked up {selector}._domainkey.{domain}")

    verifier = feed(ArcVerifier(parse_message(MESSAGE).fields), MESSAGE)
    assert verifier.keys_needed() == []
    assert verifier.result(no_lookup) == ArcVerdict(ArcResult.NONE, 0, "", "", "")
    assert dkimpy(MESSAGE) == "none"


@pytest.mark.parametrize(
    ("down", "label"),
    [("example.net", "ARC-Message-Signature i=2"), ("example.org", "ARC-Seal i=1")],
)
def test_a_key_that_cannot_be_fetched_fails_as_temporary(down: str, label: str) -> None:
    def servfail(selector: str, domain: str) -> Sequence[str]:
        if domain == down:
            raise KeyUnavailable("SERVFAIL")
        return lookup(selector, domain)

    verdict = verify(two_hops(), keys=servfail)
    assert verdict.result is ArcResult.FAIL
    assert verdict.reason.startswith(label)
    assert "temporary" in verdict.reason and "SERVFAIL" in verdict.reason


@pytest.mark.parametrize(
    ("records", "reason"),
    [([], "no key record"), (["v=DKIM1; k=rsa; p="], "key revoked")],
)
def test_a_key_that_is_missing_or_revoked_fails(records: list[str], reason: str) -> None:
    def first_hop_gone(selector: str, domain: str) -> Sequence[str]:
        return records if domain == "example.org" else lookup(selector, domain)

    verdict = verify(two_hops(), keys=first_hop_gone)
    assert (verdict.result, verdict.reason) == (ArcResult.FAIL, f"ARC-Seal i=1: {reason}")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (one_hop, [("arc1", "example.org")]),
        (two_hops, [("arc2", "example.net"), ("arc1", "example.org")]),
    ],
    ids=["one-hop", "two-hops"],
)
def test_keys_needed_are_the_keys_result_looks_up(
    build: Callable[[], bytes], expected: list[tuple[str, str]]
) -> None:
    counting = Counting()
    message = build()
    verifier = feed(ArcVerifier(parse_message(message).fields), message)
    assert verifier.keys_needed() == expected
    assert verifier.result(counting).result is ArcResult.PASS
    assert counting.calls == expected


def test_a_failure_looks_up_no_key_beyond_keys_needed() -> None:
    counting = Counting()
    message = changed_subject(two_hops())
    verifier = feed(ArcVerifier(parse_message(message).fields), message)
    assert verifier.result(counting).result is ArcResult.FAIL
    assert counting.calls == [("arc2", "example.net")]
    assert counting.calls == verifier.keys_needed()[: len(counting.calls)]
