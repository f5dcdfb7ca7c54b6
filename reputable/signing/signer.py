"""DKIM-Signature header fields for one message, built from its fields and body hash. Pure.

`build_signature` is the whole RFC 6376 §5 signing algorithm as one pure function;
`MessageSigner` feeds it from a stream (the milter's callbacks, the `sign` filter).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from reputable.signing.canonicalization import BodyHasher, Canonicalization, canonicalize_header
from reputable.signing.headers import (
    FOLD,
    SIGNATURE_NAME,
    HeaderField,
    fold_signature,
    select_headers,
)
from reputable.signing.signature import SigningKey, sign_digest_input, signature_size

# RFC 5322 §3.6.8 ftext (printable ASCII but ":"), lower-case: names go into h= as given.
_FIELD_NAME = re.compile(r"[!-9;-@\[-~]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningPolicy:
    """What every signature of a message covers and how it is canonicalized (the c= tag)."""

    header_canon: Canonicalization = Canonicalization.RELAXED
    body_canon: Canonicalization = Canonicalization.RELAXED
    headers: tuple[str, ...]  # lower-case names to sign
    oversign: tuple[str, ...] = ()  # lower-case names signed once more than present

    def __post_init__(self) -> None:
        for name in (*self.headers, *self.oversign):
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"invalid header field name to sign: {name!r} (lower-case ftext)")
        if "from" not in self.headers:
            # RFC 6376 §5.4: From MUST be signed; §6.1.1: verifiers ignore signatures without it.
            raise ValueError("the signed headers must include 'from' (RFC 6376 §5.4)")


class MessageSigner:
    """Streams one message: header fields, then body chunks; signs with every key at the end."""

    __slots__ = ("_body", "_fields", "_in_body", "_keys", "_policy")

    def __init__(self, keys: Sequence[SigningKey], policy: SigningPolicy) -> None:
        self._keys = tuple(keys)
        self._policy = policy
        self._fields: list[HeaderField] = []
        # One body hash for every key: they share the policy's body canonicalization.
        self._body = BodyHasher(policy.body_canon)
        self._in_body = False

    def header(self, field: HeaderField) -> None:
        """One header field, in message order; raises ValueError once the body has begun."""
        if self._in_body:
            raise ValueError("header field after the body began")
        self._fields.append(field)

    def body(self, chunk: bytes) -> None:
        """Body bytes with CRLF line ends; any chunking gives the same signatures."""
        self._in_body = True
        self._body.update(chunk)

    def signatures(self, now: int) -> list[HeaderField]:
        """One DKIM-Signature field per key, in key order, with t=`now` (seconds since the epoch).

        Ends the body: a later body() raises ValueError.
        """
        self._in_body = True
        body_hash = self._body.digest()
        return [build_signature(k, self._policy, self._fields, body_hash, now) for k in self._keys]


def build_signature(
    key: SigningKey,
    policy: SigningPolicy,
    fields: Sequence[HeaderField],
    body_hash: bytes,
    now: int,
) -> HeaderField:
    """The DKIM-Signature field of `key` over `fields` (all of the message's, in order).

    RFC 6376 §3.7: b= signs the selected fields and then this field itself as it will
    appear, with the b= value empty. The field is folded with a b= placeholder of the
    signature's length; folding depends on lengths only, so the real value lands in
    the same places and the signed prefix is unchanged.
    """
    names, chosen = select_headers(fields, policy.headers, policy.oversign)
    tags = [
        ("v", "1"),
        ("a", str(key.algorithm)),
        ("c", f"{policy.header_canon}/{policy.body_canon}"),
        ("d", key.domain),
        ("s", key.selector),
        ("t", str(now)),
        ("h", ":".join(names)),
        ("bh", base64.b64encode(body_hash).decode("ascii")),
    ]
    template = fold_signature([*tags, ("b", "A" * _base64_length(signature_size(key)))])
    cut = template.rindex(b"b=") + 2
    unsigned = HeaderField(SIGNATURE_NAME, template[:cut])
    signature = sign_digest_input(key, header_hash_input(chosen, unsigned, policy.header_canon))
    value = template[:cut] + _fill_placeholder(template[cut:], base64.b64encode(signature))
    return HeaderField(SIGNATURE_NAME, value)


def _fill_placeholder(folded: bytes, b64: bytes) -> bytes:
    """The folded b= placeholder with the real value in its place: the same folds, same lengths."""
    pieces = folded.split(FOLD)
    if sum(map(len, pieces)) != len(b64) or any(piece.strip(b"A") for piece in pieces):
        raise AssertionError(f"b= placeholder {folded!r} does not fit a value of {len(b64)}")
    filled: list[bytes] = []
    start = 0
    for piece in pieces:
        filled.append(b64[start : start + len(piece)])
        start += len(piece)
    return FOLD.join(filled)


def header_hash_input(
    fields: Sequence[HeaderField], unsigned: HeaderField, canon: Canonicalization
) -> bytes:
    """What b= signs (RFC 6376 §3.7): `fields` canonicalized in h= order, then the
    DKIM-Signature field `unsigned` (b= value empty) canonicalized, without its final CRLF.
    """
    signed = b"".join(canonicalize_header(f, canon) for f in fields)
    return signed + canonicalize_header(unsigned, canon)[:-2]


def _base64_length(size: int) -> int:
    return 4 * -(-size // 3)
