"""The DKIM-Signature field itself: keys, the RFC 8463 vector, header selection, folding."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from reputable.signing.algorithm import Algorithm
from reputable.signing.canonicalization import BodyHasher, Canonicalization, canonicalize_header
from reputable.signing.headers import (
    SIGNATURE_NAME,
    HeaderField,
    fold_signature,
    select_headers,
)
from reputable.signing.rawmessage import parse_message
from reputable.signing.signature import SigningKey, sign_digest_input, signature_size
from reputable.signing.signer import header_hash_input

DATA = Path(__file__).parent / "data" / "rfc8463"
RFC8032_TEST1_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
SIGNED = parse_message((DATA / "signed.eml").read_bytes())
ED25519_FIELD, RSA_FIELD, *MESSAGE_FIELDS = SIGNED.fields
RECORDS = dict(line.split("\t") for line in (DATA / "records.txt").read_text("ascii").splitlines())


def load_ed25519() -> SigningKey:
    seed = base64.b64decode((DATA / "brisbane.ed25519").read_text("ascii"))
    private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return SigningKey("football.example.com", "brisbane", Algorithm.ED25519_SHA256, private)


def load_rsa() -> SigningKey:
    private = serialization.load_pem_private_key((DATA / "test.rsa.pem").read_bytes(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return SigningKey("football.example.com", "test", Algorithm.RSA_SHA256, private)


def tags_of(value: bytes) -> dict[str, str]:
    """A tag list as a verifier reads it (RFC 6376 §3.2), FWS removed from b= and bh=."""
    tags: dict[str, str] = {}
    for spec in value.decode("ascii").replace("\r\n", "").split(";"):
        name, _, tag_value = spec.partition("=")
        name, tag_value = name.strip(" \t"), tag_value.strip(" \t")
        if name in ("b", "bh"):
            tag_value = re.sub(r"[ \t]", "", tag_value)
        if name == "h":
            tag_value = re.sub(r"[ \t]*:[ \t]*", ":", tag_value)
        tags[name] = tag_value
    return tags


def without_b(value: bytes) -> bytes:
    """RFC 6376 §3.7: the b= value, and the FWS inside it, taken out."""
    return re.sub(rb"(b[ \t]*=)[A-Za-z0-9+/=\r\n \t]*$", rb"\1", value)


def verifier_select(fields: Sequence[HeaderField], h: Sequence[str]) -> list[HeaderField]:
    """RFC 6376 §5.4.2 as a verifier applies it: each h= name takes the next instance up."""
    left = list(fields)
    chosen = []
    for name in h:
        match = [f for f in left if f.name.strip().lower() == name.encode()]
        if match:
            chosen.append(match[-1])
            left.remove(match[-1])
    return chosen


# --- the RFC 8463 Appendix A vector ------------------------------------------


def test_vector_keys_are_the_published_ones() -> None:
    ed = load_ed25519().private_key
    seed = ed.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = ed.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert seed.hex() == RFC8032_TEST1_SEED
    assert public.hex() == RFC8032_TEST1_PUBLIC
    assert RECORDS["brisbane._domainkey.football.example.com"].endswith(
        "p=" + base64.b64encode(public).decode()
    )
    rsa_public = (
        load_rsa()
        .private_key.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert RECORDS["test._domainkey.football.example.com"].endswith(
        "p=" + base64.b64encode(rsa_public).decode()
    )


def test_vector_body_hash() -> None:
    hasher = BodyHasher(Canonicalization.RELAXED)
    hasher.update(SIGNED.body)
    expected = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
    assert base64.b64encode(hasher.digest()).decode() == expected
    assert tags_of(ED25519_FIELD.value)["bh"] == tags_of(RSA_FIELD.value)["bh"] == expected


@pytest.mark.parametrize(
    ("key", "rfc_field"),
    [(load_ed25519(), ED25519_FIELD), (load_rsa(), RSA_FIELD)],
    ids=["ed25519", "rsa"],
)
def test_vector_signature_reproduced(key: SigningKey, rfc_field: HeaderField) -> None:
    rfc = tags_of(rfc_field.value)
    assert rfc["a"] == key.algorithm and rfc["s"] == key.selector and rfc["t"] == "1528637909"
    # The RFC's own tags (i= and q= included, h= spelled "from : to : ..."), folded by us.
    names = ("v", "a", "c", "d", "i", "q", "s", "t", "h", "bh")
    raw_h = " : ".join(rfc["h"].split(":"))
    tags = [(n, raw_h if n == "h" else rfc[n]) for n in names]
    unsigned = HeaderField(SIGNATURE_NAME, fold_signature([*tags, ("b", "")]))
    chosen = verifier_select(MESSAGE_FIELDS, rfc["h"].split(":"))
    data = header_hash_input(chosen, unsigned, Canonicalization.RELAXED)

    assert base64.b64encode(sign_digest_input(key, data)).decode() == rfc["b"]

    # The field we would emit is the RFC's up to folding: the same tags, and the same
    # bytes under relaxed canonicalization once b= is emptied (what b= signs).
    ours = fold_signature([*tags, ("b", rfc["b"])])
    assert tags_of(ours) == rfc
    relaxed = Canonicalization.RELAXED
    assert canonicalize_header(HeaderField(SIGNATURE_NAME, without_b(ours)), relaxed) == (
        canonicalize_header(HeaderField(SIGNATURE_NAME, without_b(rfc_field.value)), relaxed)
    )


# --- keys and the signing primitive ------------------------------------------


def test_ed25519_signs_the_sha256_of_the_data() -> None:
    key = load_ed25519()
    assert isinstance(key.private_key, ed25519.Ed25519PrivateKey)
    data = b"from:Joe\r\ndkim-signature:v=1; b="
    signature = sign_digest_input(key, data)
    public = key.private_key.public_key()
    public.verify(signature, hashlib.sha256(data).digest())
    with pytest.raises(InvalidSignature):
        public.verify(signature, data)  # RFC 8463 §3: not PureEdDSA over the data itself


def test_rsa_signs_pkcs1v15_sha256() -> None:
    key = load_rsa()
    assert isinstance(key.private_key, rsa.RSAPrivateKey)
    data = b"from:Joe\r\ndkim-signature:v=1; b="
    signature = sign_digest_input(key, data)
    key.private_key.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    assert len(signature) == signature_size(key) == 128


def test_signature_sizes() -> None:
    assert signature_size(load_ed25519()) == 64
    big = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert signature_size(SigningKey("x.example", "s", Algorithm.RSA_SHA256, big)) == 256


def test_signing_key_repr_hides_the_private_key() -> None:
    key = load_ed25519()
    text = repr(key)
    assert "brisbane" in text and "football.example.com" in text
    assert "private" not in text.lower() and "Ed25519PrivateKey" not in text


def test_signing_key_algorithm_must_fit_the_key() -> None:
    with pytest.raises(ValueError, match="needs a RSAPrivateKey"):
        SigningKey("x.example", "s", Algorithm.RSA_SHA256, load_ed25519().private_key)
    with pytest.raises(ValueError, match="needs a Ed25519PrivateKey"):
        SigningKey("x.example", "s", Algorithm.ED25519_SHA256, load_rsa().private_key)


# --- select_headers ----------------------------------------------------------

RECEIVED_1 = HeaderField(b"Received", b" from a by b")
RECEIVED_2 = HeaderField(b"received", b" from b by c")
FROM = HeaderField(b"FROM", b" joe@example.com")
TO_1 = HeaderField(b"To", b" one@example.net")
TO_2 = HeaderField(b"To", b" two@example.net")
SUBJECT = HeaderField(b"Subject ", b" hi")
FIELDS = [RECEIVED_1, RECEIVED_2, FROM, TO_1, SUBJECT, TO_2]


def test_select_every_instance_bottom_up() -> None:
    h, chosen = select_headers(FIELDS, ["from", "to", "subject", "received"], [])
    assert h == ["from", "to", "to", "subject", "received", "received"]
    assert chosen == [FROM, TO_2, TO_1, SUBJECT, RECEIVED_2, RECEIVED_1]


def test_select_agrees_with_a_verifier() -> None:
    h, chosen = select_headers(FIELDS, ["from", "to", "subject", "received"], ["from", "to"])
    assert chosen == verifier_select(FIELDS, h)


def test_oversign_lists_one_more_than_present() -> None:
    h, chosen = select_headers(FIELDS, ["from", "to"], ["from", "to", "reply-to"])
    assert h == ["from", "from", "to", "to", "to", "reply-to"]
    assert chosen == [FROM, TO_2, TO_1]


def test_oversign_only_name_still_counts_its_instances() -> None:
    h, chosen = select_headers(FIELDS, ["from"], ["subject"])
    assert h == ["from", "subject", "subject"]
    assert chosen == [FROM, SUBJECT]


def test_select_absent_name_is_not_listed_unless_oversigned() -> None:
    assert select_headers(FIELDS, ["from", "cc"], []) == (["from"], [FROM])
    assert select_headers(FIELDS, ["from"], ["cc"]) == (["from", "cc"], [FROM])


def test_select_names_are_case_insensitive_and_deduplicated() -> None:
    h, chosen = select_headers(FIELDS, ["From", "from", "SUBJECT"], ["FROM"])
    assert h == ["from", "from", "subject"]
    assert chosen == [FROM, SUBJECT]


# --- fold_signature ----------------------------------------------------------

BH = base64.b64encode(bytes(range(32))).decode()
B = base64.b64encode(bytes(range(256))).decode()
TAGS = [
    ("v", "1"),
    ("a", "rsa-sha256"),
    ("c", "relaxed/relaxed"),
    ("d", "example.com"),
    ("s", "2024a"),
    ("t", "1700000000"),
    ("h", "from:from:to:subject:date:message-id:mime-version:content-type:reply-to:cc:cc"),
    ("bh", BH),
    ("b", B),
]


def lines_of(value: bytes) -> list[bytes]:
    return (SIGNATURE_NAME + b":" + value).split(b"\r\n")


def test_fold_starts_with_a_space_and_folds_with_crlf_tab() -> None:
    value = fold_signature(TAGS)
    assert value.startswith(b" v=1; a=rsa-sha256;")
    assert b"\r\n" in value
    assert all(line.startswith(b"\t") for line in lines_of(value)[1:])
    assert max(len(line) for line in lines_of(value)) <= 78
    assert tags_of(value) == dict(TAGS)


def test_fold_breaks_h_after_colons_only() -> None:
    long_h = ":".join(f"x-header-number-{i}" for i in range(20))
    value = fold_signature([("v", "1"), ("h", long_h)], width=60)
    h_lines = lines_of(value)
    assert max(len(line) for line in h_lines) <= 60
    assert all(line.endswith(b":") for line in h_lines[1:-1])
    assert tags_of(value)["h"] == long_h


def test_fold_breaks_base64_anywhere_filling_lines() -> None:
    value = fold_signature([("v", "1"), ("b", B)], width=40)
    lines = lines_of(value)
    assert [len(line) for line in lines[1:-1]] == [40] * (len(lines) - 2)
    assert tags_of(value)["b"] == B


def test_fold_keeps_a_short_tag_whole_on_a_new_line() -> None:
    value = fold_signature([("v", "1"), ("d", "a" * 50), ("bh", BH)], width=70)
    assert lines_of(value)[2] == b"\tbh=" + BH.encode()


def test_fold_layout_depends_on_lengths_only() -> None:
    placeholder = fold_signature([*TAGS[:-1], ("b", "A" * len(B))])
    real = fold_signature(TAGS)
    assert [len(line) for line in lines_of(placeholder)] == [len(line) for line in lines_of(real)]
    assert real.startswith(placeholder[: placeholder.rindex(b"b=") + 2])


def test_fold_a_too_long_unbreakable_tag_stays_whole() -> None:
    value = fold_signature([("v", "1"), ("d", "d" * 100)], width=40)
    assert lines_of(value)[1] == b"\td=" + b"d" * 100


@pytest.mark.parametrize(
    "tag",
    [("", "1"), ("1v", "1"), ("v", "a;b"), ("d", "bücher.example"), ("d", " x"), ("d", "a\r\nb")],
)
def test_fold_rejects_what_is_not_a_tag(tag: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="tag"):
        fold_signature([("v", "1"), tag])


def test_fold_width_has_a_minimum() -> None:
    with pytest.raises(ValueError, match="minimum"):
        fold_signature(TAGS, width=19)


base64_values = st.binary(max_size=600).map(lambda b: base64.b64encode(b).decode())


@st.composite
def tag_lists(draw: st.DrawFn) -> tuple[int, list[tuple[str, str]]]:
    width = draw(st.integers(min_value=40, max_value=200))
    short = st.text("abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=width - 12)
    names = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), min_size=1)
    tags = [
        ("v", "1"),
        ("a", draw(st.sampled_from(list(Algorithm)))),
        ("c", "simple/relaxed"),
        ("d", draw(short)),
        ("s", draw(short)),
        ("t", str(draw(st.integers(min_value=0, max_value=2**40)))),
        ("h", ":".join(draw(names))),
        ("bh", draw(base64_values)),
        ("b", draw(base64_values)),
    ]
    return width, tags


@given(tag_lists())
def test_fold_property(case: tuple[int, list[tuple[str, str]]]) -> None:
    width, tags = case
    value = fold_signature(tags, width)
    assert value.startswith(b" v=1;")
    assert max(len(line) for line in lines_of(value)) <= width
    assert b"\r\n\t\r\n" not in value and not value.endswith(b"\t")
    assert tags_of(value) == dict(tags)
