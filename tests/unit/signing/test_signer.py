"""MessageSigner and build_signature, checked by an independent verifier (dkimpy)."""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reputable.keys.record import record_value
from reputable.signing.algorithm import Algorithm
from reputable.signing.canonicalization import BodyHasher, Canonicalization
from reputable.signing.headers import SIGNATURE_NAME, HeaderField
from reputable.signing.rawmessage import RawMessage, parse_message, render_message
from reputable.signing.signature import SigningKey
from reputable.signing.signer import (
    MessageSigner,
    SigningPolicy,
    build_signature,
    header_hash_input,
)

NOW = 1_700_000_000
RELAXED = Canonicalization.RELAXED
SIMPLE = Canonicalization.SIMPLE
CANONS = list(itertools.product(Canonicalization, Canonicalization))
HEADERS = ("from", "to", "subject", "date", "message-id", "received", "cc", "references")
RFC8463 = Path(__file__).parent / "data" / "rfc8463"


# --- dkimpy (with PyNaCl for Ed25519) as the verifier ---------------------------


def record(key: SigningKey) -> bytes:
    return record_value(key.algorithm, key.private_key).encode()


def verify(message: bytes, keys: Sequence[SigningKey], index: int = 0) -> bool:
    """dkimpy's verdict on the `index`-th DKIM-Signature, keys served as DNS would."""
    records = {f"{k.selector}._domainkey.{k.domain}.".encode(): record(k) for k in keys}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records[name]

    try:
        return bool(dkim.DKIM(message).verify(idx=index, dnsfunc=dnsfunc))
    except dkim.DKIMException:
        return False


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey("example.com", "rsa2024", Algorithm.RSA_SHA256, private)


@pytest.fixture(scope="module")
def ed25519_key() -> SigningKey:
    private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey("example.com", "ed2024", Algorithm.ED25519_SHA256, private)


@pytest.fixture(params=["rsa", "ed25519"])
def key(request: pytest.FixtureRequest, rsa_key: SigningKey, ed25519_key: SigningKey) -> SigningKey:
    return rsa_key if request.param == "rsa" else ed25519_key


# --- messages ----------------------------------------------------------------


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


PLAIN = parse_message(
    crlf(
        "From: Joe SixPack <joe@example.com>\n"
        "To: Suzie Q <suzie@example.net>\n"
        "Subject: Is dinner ready?\n"
        "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\n"
        "Message-ID: <20030712040037.46341.5F8J@example.com>\n"
        "\n"
        "Hi.\n\nWe lost the game.  Are you hungry yet?\n\nJoe.\n"
    )
)
REPEATED = parse_message(
    crlf(
        "Received: from a.example.net by b.example.net; Mon, 1 Jan 2024 00:00:02 +0000\n"
        "Received: from c.example.net by a.example.net; Mon, 1 Jan 2024 00:00:01 +0000\n"
        "From: joe@example.com\n"
        "To: one@example.net\n"
        "Subject: two of a kind\n"
        "To: two@example.net\n"
        "\n"
        "body\n"
    )
)
EIGHT_BIT = parse_message(
    crlf(
        "From: Jörg Müller <joerg@example.com>\n"
        "To: 山田 <yamada@example.jp>\n"
        "Subject: Grüße aus Köln — 日本語の件名\n"
        "\n"
        "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.   \n"
        "\tEingerückt  \t mit Tabs\t\n"
        "日本語の本文です。\n"
    )
)
FOLDED = parse_message(
    crlf(
        "From: joe@example.com\n"
        "To: " + ",\n ".join(f"Recipient Number {i} <r{i}@example.net>" for i in range(40)) + "\n"
        "Subject: a subject long enough that it had to be folded once and then\n"
        "\tfolded again  with   odd   spacing  \n"
        "References: "
        + "\n ".join(f"<{i}.thread@example.com>" for i in range(60))
        + "\n\nFolded headers above.\n"
    )
)
EMPTY_BODY = parse_message(crlf("From: joe@example.com\nSubject: nothing to say\n\n"))
NO_FINAL_NEWLINE = parse_message(
    b"From: joe@example.com\nSubject: unterminated\n\nfirst line\nlast line, no newline"
)
BIG_LINE = b"Lorem ipsum  dolor\tsit amet,  \t consectetur adipiscing elit \t \r\n"
BIG = RawMessage(PLAIN.fields, (BIG_LINE * (2**20 // len(BIG_LINE) + 1))[: 2**20], b"\r\n")
MESSAGES = {
    "plain": PLAIN,
    "repeated": REPEATED,
    "8bit": EIGHT_BIT,
    "folded": FOLDED,
    "empty-body": EMPTY_BODY,
    "no-final-newline": NO_FINAL_NEWLINE,
    "1mb-odd-chunks": BIG,
}
ODD_SIZES = (1, 4093, 7, 65_537, 2, 131_071, 3)


def chunks(body: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    offset = 0
    for size in itertools.cycle(sizes):
        if offset >= len(body):
            return
        yield body[offset : offset + size]
        offset += size


def sign(
    keys: Sequence[SigningKey],
    policy: SigningPolicy,
    message: RawMessage,
    sizes: Sequence[int] = ODD_SIZES,
) -> list[HeaderField]:
    signer = MessageSigner(keys, policy)
    for field in message.fields:
        signer.header(field)
    for chunk in chunks(message.body, sizes):
        signer.body(chunk)
    return signer.signatures(NOW)


def policy_for(header: Canonicalization, body: Canonicalization) -> SigningPolicy:
    return SigningPolicy(
        header_canon=header, body_canon=body, headers=HEADERS, oversign=("from", "subject", "cc")
    )


def signed_bytes(signatures: Sequence[HeaderField], message: RawMessage) -> bytes:
    return render_message([*signatures, *message.fields], message.body, message.line_ending)


# --- dkimpy verifies what we sign --------------------------------------------


@pytest.mark.parametrize("name", list(MESSAGES))
@pytest.mark.parametrize(("header", "body"), CANONS, ids=[f"{h}/{b}" for h, b in CANONS])
def test_dkimpy_verifies(
    key: SigningKey, header: Canonicalization, body: Canonicalization, name: str
) -> None:
    message = MESSAGES[name]
    signatures = sign([key], policy_for(header, body), message)
    assert verify(signed_bytes(signatures, message), [key])


@pytest.mark.parametrize(("header", "body"), CANONS, ids=[f"{h}/{b}" for h, b in CANONS])
def test_tampered_body_fails(
    key: SigningKey, header: Canonicalization, body: Canonicalization
) -> None:
    signatures = sign([key], policy_for(header, body), PLAIN)
    tampered = RawMessage(PLAIN.fields, PLAIN.body.replace(b"hungry", b"hangry"), b"\r\n")
    assert verify(signed_bytes(signatures, PLAIN), [key])
    assert not verify(signed_bytes(signatures, tampered), [key])


@pytest.mark.parametrize(("header", "body"), CANONS, ids=[f"{h}/{b}" for h, b in CANONS])
def test_tampered_signed_header_fails(
    key: SigningKey, header: Canonicalization, body: Canonicalization
) -> None:
    signatures = sign([key], policy_for(header, body), PLAIN)
    fields = [
        HeaderField(f.name, b" Is lunch ready?") if f.name == b"Subject" else f
        for f in PLAIN.fields
    ]
    assert not verify(
        signed_bytes(signatures, RawMessage(tuple(fields), PLAIN.body, b"\r\n")), [key]
    )


def test_added_from_fails_because_from_is_oversigned(key: SigningKey) -> None:
    signatures = sign([key], policy_for(RELAXED, RELAXED), PLAIN)
    extra = HeaderField(b"From", b" mallory@example.org")
    appended = RawMessage((*PLAIN.fields, extra), PLAIN.body, b"\r\n")
    assert not verify(signed_bytes(signatures, appended), [key])


def test_added_cc_fails_because_absent_cc_is_oversigned(key: SigningKey) -> None:
    signatures = sign([key], policy_for(RELAXED, RELAXED), PLAIN)
    assert b"cc" in signatures[0].value  # listed once: "no Cc" is signed
    extra = HeaderField(b"Cc", b" mallory@example.org")
    appended = RawMessage((*PLAIN.fields, extra), PLAIN.body, b"\r\n")
    assert not verify(signed_bytes(signatures, appended), [key])


def test_added_unsigned_header_still_verifies(key: SigningKey) -> None:
    signatures = sign([key], policy_for(RELAXED, RELAXED), PLAIN)
    extra = HeaderField(b"X-Mailer", b" added in transit")
    appended = RawMessage((extra, *PLAIN.fields), PLAIN.body, b"\r\n")
    assert verify(signed_bytes(signatures, appended), [key])


@pytest.mark.parametrize(("header", "survives"), [(RELAXED, True), (SIMPLE, False)])
def test_refolding_a_signed_header(
    key: SigningKey, header: Canonicalization, survives: bool
) -> None:
    signatures = sign([key], policy_for(header, RELAXED), PLAIN)
    fields = [
        HeaderField(f.name, b" Is dinner\r\n    ready?") if f.name == b"Subject" else f
        for f in PLAIN.fields
    ]
    refolded = RawMessage(tuple(fields), PLAIN.body, b"\r\n")
    assert verify(signed_bytes(signatures, refolded), [key]) is survives


def test_dkimpy_accepts_the_rfc8463_message() -> None:
    # The verifier itself, checked on someone else's signatures: RFC 8463 A.3.
    seed = base64.b64decode((RFC8463 / "brisbane.ed25519").read_text("ascii"))
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    pem = serialization.load_pem_private_key((RFC8463 / "test.rsa.pem").read_bytes(), None)
    assert isinstance(pem, rsa.RSAPrivateKey)
    keys = [
        SigningKey("football.example.com", "brisbane", Algorithm.ED25519_SHA256, ed),
        SigningKey("football.example.com", "test", Algorithm.RSA_SHA256, pem),
    ]
    message = (RFC8463 / "signed.eml").read_bytes()
    assert verify(message, keys, 0) and verify(message, keys, 1)
    tampered = message.replace(b"hungry", b"hangry")
    assert not verify(tampered, keys, 0) and not verify(tampered, keys, 1)


# --- the signature field -----------------------------------------------------


def tag_names(value: bytes) -> list[str]:
    return re.findall(r"(?:^|;)\s*([a-z]+)=", value.decode("ascii"))


def test_tags_are_exactly_these_in_this_order(key: SigningKey) -> None:
    [signature] = sign([key], policy_for(RELAXED, SIMPLE), REPEATED)
    assert signature.name == b"DKIM-Signature"
    assert tag_names(signature.value) == ["v", "a", "c", "d", "s", "t", "h", "bh", "b"]
    unfolded = re.sub(rb"\r\n[ \t]", b" ", signature.value).decode()
    assert f"a={key.algorithm};" in unfolded and "c=relaxed/simple;" in unfolded
    assert f"d={key.domain};" in unfolded and f"s={key.selector};" in unfolded
    assert f"t={NOW};" in unfolded
    h = re.sub(r"\s", "", re.findall(r"h=([^;]*);", unfolded)[0])
    assert h == "from:from:to:to:subject:subject:received:received:cc"


def test_b_signs_the_field_as_it_appears_with_b_emptied(rsa_key: SigningKey) -> None:
    """RFC 6376 §3.7, recomputed here without dkimpy: the b= value and FWS in it removed."""
    for header in Canonicalization:
        policy = policy_for(header, RELAXED)
        [signature] = sign([rsa_key], policy, FOLDED)
        unsigned = re.sub(rb"(\sb=)[A-Za-z0-9+/=\r\n\t ]*$", rb"\1", signature.value)
        b = re.sub(rb"\s", b"", signature.value[len(unsigned) :])
        h = re.sub(r"\s", "", re.findall(r"h=([^;]*);", unsigned.decode())[0]).split(":")
        chosen = [
            f for name in dict.fromkeys(h) for f in FOLDED.fields[::-1] if f.key == name.encode()
        ]
        data = header_hash_input(chosen, HeaderField(SIGNATURE_NAME, unsigned), header)
        assert data.endswith(b"b=") and not data.endswith(b"\r\n")
        public = rsa_key.private_key.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(base64.b64decode(b), data, padding.PKCS1v15(), hashes.SHA256())


def test_no_line_of_the_field_exceeds_78(key: SigningKey) -> None:
    [signature] = sign([key], policy_for(RELAXED, RELAXED), FOLDED)
    lines = (signature.name + b":" + signature.value).split(b"\r\n")
    assert max(len(line) for line in lines) <= 78


def test_one_signature_per_key_in_key_order_sharing_one_body_hash(
    rsa_key: SigningKey, ed25519_key: SigningKey
) -> None:
    other = SigningKey("example.org", "second", Algorithm.RSA_SHA256, rsa_key.private_key)
    keys = [ed25519_key, rsa_key, other]
    signatures = sign(keys, policy_for(RELAXED, RELAXED), EIGHT_BIT)
    assert [s.name for s in signatures] == [b"DKIM-Signature"] * 3
    body_hashes = {re.findall(rb"bh=([^;]*);", re.sub(rb"\s", b"", s.value))[0] for s in signatures}
    assert len(body_hashes) == 1
    message = signed_bytes(signatures, EIGHT_BIT)
    assert [verify(message, keys, i) for i in range(3)] == [True, True, True]
    assert all(
        f"s={k.selector};".encode() in s.value for k, s in zip(keys, signatures, strict=True)
    )


def test_body_is_hashed_once_per_message(
    rsa_key: SigningKey, ed25519_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    original = BodyHasher.update

    def counting(self: BodyHasher, chunk: bytes) -> None:
        calls.append(chunk)
        original(self, chunk)

    monkeypatch.setattr(BodyHasher, "update", counting)
    sign([rsa_key, ed25519_key], policy_for(RELAXED, RELAXED), PLAIN, sizes=[len(PLAIN.body)])
    assert calls == [PLAIN.body]


def test_no_keys_no_signatures() -> None:
    assert sign([], policy_for(RELAXED, RELAXED), PLAIN) == []


bodies = st.lists(
    st.sampled_from([b" ", b"\t", b"\r\n", b"\r", b"\n", b"x", b"\xc3\xa9", b"  \r\n"]),
    max_size=80,
).map(b"".join)


@given(bodies, st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
def test_any_chunking_gives_the_same_signature(
    ed25519_key: SigningKey, body: bytes, sizes: list[int]
) -> None:
    message = RawMessage(PLAIN.fields, body, b"\r\n")
    policy = policy_for(RELAXED, SIMPLE)
    assert sign([ed25519_key], policy, message, sizes) == sign(
        [ed25519_key], policy, message, [len(body) or 1]
    )


def test_build_signature_is_pure(key: SigningKey) -> None:
    policy = policy_for(SIMPLE, SIMPLE)
    body_hash = bytes(32)
    first = build_signature(key, policy, PLAIN.fields, body_hash, NOW)
    assert build_signature(key, policy, PLAIN.fields, body_hash, NOW) == first
    assert build_signature(key, policy, PLAIN.fields, body_hash, NOW + 1) != first


# --- misuse ------------------------------------------------------------------


def test_header_after_body_raises(rsa_key: SigningKey) -> None:
    signer = MessageSigner([rsa_key], policy_for(RELAXED, RELAXED))
    signer.body(b"x\r\n")
    with pytest.raises(ValueError, match="after the body"):
        signer.header(HeaderField(b"From", b" joe@example.com"))


def test_body_after_signatures_raises(rsa_key: SigningKey) -> None:
    signer = MessageSigner([rsa_key], policy_for(RELAXED, RELAXED))
    signer.header(HeaderField(b"From", b" joe@example.com"))
    first = signer.signatures(NOW)
    assert signer.signatures(NOW) == first  # the body hash is kept
    with pytest.raises(ValueError, match="after finish"):
        signer.body(b"late")


def test_policy_requires_from() -> None:
    with pytest.raises(ValueError, match="from"):
        SigningPolicy(headers=("to", "subject"))


@pytest.mark.parametrize("name", ["From", "x:y", "", "sübject", "a b"])
def test_policy_rejects_names_that_are_not_lower_case_field_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header field name"):
        SigningPolicy(headers=("from", name))
    with pytest.raises(ValueError, match="invalid header field name"):
        SigningPolicy(headers=("from",), oversign=(name,))


def test_policy_defaults_are_relaxed_relaxed() -> None:
    policy = SigningPolicy(headers=("from",))
    assert (policy.header_canon, policy.body_canon, policy.oversign) == (RELAXED, RELAXED, ())


def test_the_real_b_value_takes_the_placeholders_folds() -> None:
    from reputable.signing.signer import _fill_placeholder

    assert _fill_placeholder(b"AAA\r\n\tAA", b"abcde") == b"abc\r\n\tde"
    assert _fill_placeholder(b"\r\n\tAAAA", b"abcd") == b"\r\n\tabcd"
    with pytest.raises(AssertionError):
        _fill_placeholder(b"AAA", b"abcd")  # a value of another length
    with pytest.raises(AssertionError):
        _fill_placeholder(b"AA;A", b"abc")  # not a placeholder
