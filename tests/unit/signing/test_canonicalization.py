"""Canonicalization against RFC 6376 §3.4.5, dkimpy as an oracle, and any chunking."""

from __future__ import annotations

import base64
import hashlib
import itertools

import pytest
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from reputable.signing.canonicalization import (
    BodyCanonicalizer,
    BodyHasher,
    Canonicalization,
    canonicalize_header,
)
from reputable.signing.headers import HeaderField

RELAXED = Canonicalization.RELAXED
SIMPLE = Canonicalization.SIMPLE

# RFC 6376 §3.4.5, written out: "A: <SP> X <CRLF>", "B <SP> : <SP> Y <HTAB><CRLF>
# <HTAB> Z <SP><SP><CRLF>", then the body " <SP> C <SP><CRLF>", "D <SP><HTAB><SP> E
# <CRLF>" and two empty lines.
EXAMPLE_A = HeaderField(b"A", b" X")
EXAMPLE_B = HeaderField(b"B ", b" Y\t\r\n\tZ  ")
EXAMPLE_BODY = b" C \r\nD \t E\r\n\r\n\r\n"


def canonical_body(canon: Canonicalization, body: bytes) -> bytes:
    canonicalizer = BodyCanonicalizer(canon)
    return canonicalizer.feed(body) + canonicalizer.finish()


def chunked_body(canon: Canonicalization, chunks: list[bytes]) -> bytes:
    canonicalizer = BodyCanonicalizer(canon)
    return b"".join([*(canonicalizer.feed(c) for c in chunks), canonicalizer.finish()])


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def dkimpy_body(canon: Canonicalization, body: bytes) -> bytes:
    oracle = Relaxed if canon is RELAXED else Simple
    result: bytes = oracle.canonicalize_body(body)
    return result


# --- RFC 6376 §3.4.5 ---------------------------------------------------------


def test_rfc6376_example_relaxed_headers() -> None:
    assert canonicalize_header(EXAMPLE_A, RELAXED) == b"a:X\r\n"
    assert canonicalize_header(EXAMPLE_B, RELAXED) == b"b:Y Z\r\n"


def test_rfc6376_example_simple_headers() -> None:
    assert canonicalize_header(EXAMPLE_A, SIMPLE) == b"A: X\r\n"
    assert canonicalize_header(EXAMPLE_B, SIMPLE) == b"B : Y\t\r\n\tZ  \r\n"


def test_rfc6376_example_relaxed_body() -> None:
    assert canonical_body(RELAXED, EXAMPLE_BODY) == b" C\r\nD E\r\n"


def test_rfc6376_example_simple_body() -> None:
    assert canonical_body(SIMPLE, EXAMPLE_BODY) == b" C \r\nD \t E\r\n"


# --- header fields -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (HeaderField(b"SUBJECT", b" Hi"), b"subject:Hi\r\n"),
        (HeaderField(b"Subject", b"\t  lots \t of\t\tspace \t "), b"subject:lots of space\r\n"),
        (HeaderField(b"Subject \t", b" around the colon"), b"subject:around the colon\r\n"),
        (HeaderField(b"To", b" a@x,\r\n b@y,\r\n\t c@z"), b"to:a@x, b@y, c@z\r\n"),
        (HeaderField(b"X-Empty", b""), b"x-empty:\r\n"),
        (HeaderField(b"X-Blank", b" \t "), b"x-blank:\r\n"),
        (HeaderField(b"Subject", " Grüße\t\t日本".encode()), "subject:Grüße 日本\r\n".encode()),
    ],
)
def test_relaxed_header(field: HeaderField, expected: bytes) -> None:
    assert canonicalize_header(field, RELAXED) == expected


def test_relaxed_header_unfolds_lf_only_folds_like_crlf_ones() -> None:
    crlf = HeaderField(b"To", b" a@x,\r\n\tb@y")
    lf = HeaderField(b"To", b" a@x,\n\tb@y")
    assert canonicalize_header(lf, RELAXED) == canonicalize_header(crlf, RELAXED)


def test_relaxed_header_keeps_8bit_bytes_and_case_of_value() -> None:
    field = HeaderField(b"Subject", b" \xff\x00 MiXeD")
    assert canonicalize_header(field, RELAXED) == b"subject:\xff\x00 MiXeD\r\n"


def test_simple_header_is_byte_exact() -> None:
    field = HeaderField(b"sUbJeCt ", b"  x \t\r\n  y  ")
    assert canonicalize_header(field, SIMPLE) == b"sUbJeCt :  x \t\r\n  y  \r\n"


header_names = st.from_regex(rb"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True)
# dkimpy strips every whitespace byte at the ends of a value, RFC 6376 only WSP: the
# values keep CR, LF, VT and FF out except in folds, where the two agree.
header_text = st.binary(min_size=1).map(lambda b: bytes(x for x in b if x not in b"\r\n\v\f"))
header_values = st.lists(
    st.one_of(st.sampled_from([b" ", b"\t", b"  ", b"\r\n ", b"\r\n\t"]), header_text),
    max_size=12,
).map(b"".join)


@given(header_names, header_values)
def test_relaxed_header_matches_dkimpy(name: bytes, value: bytes) -> None:
    [(dk_name, dk_value)] = Relaxed.canonicalize_headers([(name, value)])
    expected = dk_name + b":" + dk_value
    assert canonicalize_header(HeaderField(name, value), RELAXED) == expected


# --- bodies ------------------------------------------------------------------

EMPTY_SHA256 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # sha256(b"")
CRLF_SHA256 = "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY="  # sha256(b"\r\n")


@pytest.mark.parametrize("body", [b"", b"\r\n", b"\r\n\r\n\r\n", b" \t \r\n\t\r\n"])
def test_relaxed_empty_body_is_empty(body: bytes) -> None:
    assert canonical_body(RELAXED, body) == b""
    hasher = BodyHasher(RELAXED)
    hasher.update(body)
    assert base64.b64encode(hasher.digest()).decode() == EMPTY_SHA256


@pytest.mark.parametrize("body", [b"", b"\r\n", b"\r\n\r\n\r\n"])
def test_simple_empty_body_is_one_crlf(body: bytes) -> None:
    assert canonical_body(SIMPLE, body) == b"\r\n"
    hasher = BodyHasher(SIMPLE)
    hasher.update(body)
    assert base64.b64encode(hasher.digest()).decode() == CRLF_SHA256


def test_simple_keeps_whitespace_only_lines_which_relaxed_drops() -> None:
    assert canonical_body(SIMPLE, b" \r\n") == b" \r\n"
    assert canonical_body(RELAXED, b" \r\n") == b""


@pytest.mark.parametrize("canon", list(Canonicalization))
def test_trailing_empty_lines_are_removed(canon: Canonicalization) -> None:
    assert canonical_body(canon, b"a\r\n\r\nb\r\n\r\n\r\n\r\n") == b"a\r\n\r\nb\r\n"


@pytest.mark.parametrize("canon", list(Canonicalization))
def test_leading_and_inner_empty_lines_are_kept(canon: Canonicalization) -> None:
    assert canonical_body(canon, b"\r\n\r\na\r\n\r\n\r\nb\r\n") == b"\r\n\r\na\r\n\r\n\r\nb\r\n"


@pytest.mark.parametrize("canon", list(Canonicalization))
def test_body_without_final_crlf_gets_one(canon: Canonicalization) -> None:
    assert canonical_body(canon, b"a\r\nlast") == b"a\r\nlast\r\n"


def test_relaxed_final_wsp_without_crlf_stays_one_space_as_dkimpy_does() -> None:
    # Not at "the end of a line" until a CRLF follows (RFC 6376 §3.4.4 a, then b).
    assert canonical_body(RELAXED, b"a \t ") == b"a \r\n" == Relaxed.canonicalize_body(b"a \t ")


@pytest.mark.parametrize("canon", list(Canonicalization))
def test_bare_cr_and_lf_are_ordinary_bytes(canon: Canonicalization) -> None:
    body = b"a\rb\nc\r\r\n\n\r\n"
    assert canonical_body(canon, body) == dkimpy_body(canon, body) == b"a\rb\nc\r\r\n\n\r\n"


def test_relaxed_wsp_run_across_chunks() -> None:
    chunks = [b"a ", b"\t", b"  ", b"b  ", b" \t", b"\r\n"]
    assert chunked_body(RELAXED, chunks) == b"a b\r\n"


def test_relaxed_trailing_wsp_across_chunks_before_split_crlf() -> None:
    assert chunked_body(RELAXED, [b"a  ", b" \r", b"\nb"]) == b"a\r\nb\r\n"


@pytest.mark.parametrize("canon", list(Canonicalization))
def test_crlf_split_between_chunks(canon: Canonicalization) -> None:
    whole = canonical_body(canon, b"a\r\n\r\nb\r\n\r\n")
    assert chunked_body(canon, [b"a\r", b"\n\r", b"\nb\r", b"\n\r", b"\n"]) == whole
    assert whole == b"a\r\n\r\nb\r\n"


@pytest.mark.parametrize("canon", list(Canonicalization))
def test_cr_at_end_of_chunk_not_followed_by_lf(canon: Canonicalization) -> None:
    assert chunked_body(canon, [b"a\r", b"b\r\n"]) == b"a\rb\r\n"
    assert chunked_body(canon, [b"a\r"]) == b"a\r\r\n"


@pytest.mark.parametrize("canon", list(Canonicalization))
def test_empty_chunks_change_nothing(canon: Canonicalization) -> None:
    chunks = [b"", b"a \r", b"", b"\n", b"", b"\r\n", b""]
    assert chunked_body(canon, chunks) == canonical_body(canon, b"a \r\n\r\n")


@pytest.mark.parametrize("canon", list(Canonicalization))
def test_trailing_empty_lines_held_back_until_content_follows(canon: Canonicalization) -> None:
    canonicalizer = BodyCanonicalizer(canon)
    assert canonicalizer.feed(b"a\r\n\r\n") == b"a"
    assert canonicalizer.feed(b"\r\n") == b""
    assert canonicalizer.feed(b"b\r\n") == b"\r\n\r\n\r\nb"
    assert canonicalizer.finish() == b"\r\n"


def test_long_line_without_newline_is_not_accumulated() -> None:
    canonicalizer = BodyCanonicalizer(RELAXED)
    emitted = sum(len(canonicalizer.feed(b"word  \t" * 10_000)) for _ in range(50))
    assert emitted == 50 * 10_000 * len(b"word ") - 1  # only the final SP is held back
    assert canonicalizer.feed(b"\r\n") == b""  # the SP before it goes; the CRLF may be trailing
    assert canonicalizer.finish() == b"\r\n"


def test_long_wsp_run_without_newline_carries_one_space() -> None:
    canonicalizer = BodyCanonicalizer(RELAXED)
    assert canonicalizer.feed(b"x") == b"x"
    for _ in range(100):
        assert canonicalizer.feed(b" \t" * 50_000) == b""
    assert canonicalizer.feed(b"y") == b" y"
    assert canonicalizer.finish() == b"\r\n"


def test_long_wsp_run_inside_a_chunk_is_one_space() -> None:
    body = b"a" + b" " * 100_000 + b"b\t\t" + b"\t" * 33 + b"c\r\n"
    assert canonical_body(RELAXED, body) == b"a b c\r\n"


def test_feed_after_finish_raises() -> None:
    canonicalizer = BodyCanonicalizer(SIMPLE)
    canonicalizer.finish()
    with pytest.raises(ValueError, match="after finish"):
        canonicalizer.feed(b"x")
    with pytest.raises(ValueError, match="twice"):
        canonicalizer.finish()


# Bodies rich in exactly the bytes the rules are about.
bodies = st.lists(
    st.sampled_from([b" ", b"  ", b"\t", b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"a", b"\x00\xff"]),
    max_size=60,
).map(b"".join) | st.binary(max_size=200)
cut_points = st.lists(st.integers(min_value=0, max_value=400), max_size=12)


@given(bodies, cut_points)
@settings(max_examples=400)
@pytest.mark.parametrize("canon", list(Canonicalization))
def test_any_chunking_gives_the_one_shot_result(
    canon: Canonicalization, body: bytes, cuts: list[int]
) -> None:
    assert chunked_body(canon, split_at(body, cuts)) == canonical_body(canon, body)


@given(bodies)
@settings(max_examples=400)
@pytest.mark.parametrize("canon", list(Canonicalization))
def test_one_shot_matches_dkimpy(canon: Canonicalization, body: bytes) -> None:
    assert canonical_body(canon, body) == dkimpy_body(canon, body)


@given(bodies, cut_points)
@pytest.mark.parametrize("canon", list(Canonicalization))
def test_body_hasher_hashes_the_canonical_body(
    canon: Canonicalization, body: bytes, cuts: list[int]
) -> None:
    hasher = BodyHasher(canon)
    for chunk in split_at(body, cuts):
        hasher.update(chunk)
    assert hasher.digest() == hashlib.sha256(dkimpy_body(canon, body)).digest()


def test_body_hasher_digest_is_final() -> None:
    hasher = BodyHasher(RELAXED)
    hasher.update(b"a\r\n")
    first = hasher.digest()
    assert hasher.digest() == first
    with pytest.raises(ValueError, match="after finish"):
        hasher.update(b"more")


def test_body_hasher_big_body_in_odd_chunks() -> None:
    line = b"Lorem  ipsum\tdolor sit amet, \t consectetur  \r\n"
    body = line * 25_000 + b"\r\n" * 5
    hasher = BodyHasher(RELAXED)
    sizes = [1, 4093, 7, 65_537, 2, 131_071]
    offset = 0
    for i in range(10_000):
        if offset >= len(body):
            break
        size = sizes[i % len(sizes)]
        hasher.update(body[offset : offset + size])
        offset += size
    assert hasher.digest() == hashlib.sha256(Relaxed.canonicalize_body(body)).digest()
