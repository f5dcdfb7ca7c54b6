"""DKIM verification of a received message (RFC 6376 §6, RFC 8463 Ed25519, RFC 8301). Pure
but for the key lookup, which the caller supplies.

A `DkimVerifier` takes the header fields, then the body in chunks of any size
(one streaming hash per distinct canonicalization and body length, so a 50 MB
body is never held), then asks for each signature's key and verifies. At most
`MAX_SIGNATURES` signatures are verified, the first ones from the top; each
gets an RFC 8601 result:

* pass; fail (the body or header hash does not match, the key was revoked,
  the signature expired); neutral (none of these, e.g. nothing to verify);
* policy: it verifies, but on terms we do not accept (an RSA key under 1024
  bits, RFC 8301 §3.2);
* temperror: the key could not be fetched now (a DNS timeout, SERVFAIL);
* permerror: the signature or its key record cannot be used (a missing or bad
  tag, rsa-sha1, no key record, a key of another type).

A signature with l= covers only that many bytes of the body: it may pass,
and its result says so, since anything may have been appended after them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from reputable.signing.canonicalization import BodyCanonicalizer, Canonicalization
from reputable.signing.headers import HeaderField
from reputable.signing.signer import header_hash_input

MAX_SIGNATURES = 5
MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers MUST NOT accept smaller keys
_SIGNATURE_KEY = b"dkim-signature"
_B_TAG = re.compile(rb"(^|;)([ \t\r\n]*b[ \t\r\n]*=)[^;]*")


class DkimResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NEUTRAL = "neutral"
    POLICY = "policy"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class KeyUnavailable(Exception):
    """The key record could not be fetched now (DNS timeout, SERVFAIL): temperror."""


# (selector, domain) -> the TXT strings of each record at selector._domainkey.domain,
# joined per record; [] when the name does not exist or holds no TXT record.
KeyLookup = Callable[[str, str], Sequence[str]]


@dataclass(frozen=True, slots=True)
class SignatureResult:
    result: DkimResult
    domain: str  # d=, "" when unreadable
    selector: str  # s=
    algorithm: str  # a=
    reason: str  # why, in a few words ("" for a plain pass)
    body_length: int | None = None  # l=
    b_prefix: str = ""  # the first 8 characters of b= (RFC 6008 header.b)


class _Unusable(Exception):
    """A signature that cannot be used: permerror, with the reason."""


@dataclass
class _Signature:
    header: HeaderField
    tags: dict[str, str]
    canon_header: Canonicalization
    canon_body: Canonicalization
    length: int | None
    error: str = ""  # set: permerror before any hashing
    hasher: _LimitedHash | None = None


class _LimitedHash:
    """SHA-256 of the canonical body, of its first `limit` bytes when l= says so."""

    def __init__(self, canon: Canonicalization, limit: int | None) -> None:
        self.canonicalizer = BodyCanonicalizer(canon)
        self.hash = hashlib.sha256()
        self.limit = limit
        self.seen = 0  # canonical bytes so far

    def update(self, chunk: bytes) -> None:
        for piece in self.canonicalizer.feed_pieces(chunk):
            self._take(bytes(piece))

    def digest(self) -> tuple[bytes, int]:
        """The hash, and how many canonical bytes the body had in all."""
        self._take(self.canonicalizer.finish())
        return self.hash.digest(), self.seen

    def _take(self, data: bytes) -> None:
        if self.limit is not None:
            room = max(0, self.limit - self.seen)
            self.hash.update(data[:room])
        else:
            self.hash.update(data)
        self.seen += len(data)


_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_FWS = re.compile(r"[ \t\r\n]+")
_FWS_CHARS = frozenset(" \t\r\n")


def parse_tags(value: bytes) -> dict[str, str]:
    """A tag list (RFC 6376 §3.2) with folding whitespace removed from the values."""
    tags: dict[str, str] = {}
    text = value.decode("ascii", "replace")
    for item in text.split(";"):
        name, equals, content = item.partition("=")
        name = name.strip(" \t\r\n")
        if not equals:
            if not name:
                continue  # an empty item: "a=1;;" or the ";" at the end
            raise _Unusable(f"a tag that is not name=value: {item.strip()[:40]!r}")
        if not _TAG_NAME.fullmatch(name):
            raise _Unusable(f"a tag that is not name=value: {item.strip()[:40]!r}")
        if name in tags:
            raise _Unusable(f"the tag {name}= twice")
        if not _FWS_CHARS.isdisjoint(content):
            content = _FWS.sub("" if name in ("b", "bh") else " ", content).strip()
        tags[name] = content
    return tags


class DkimVerifier:
    """Verify the DKIM signatures of one message: `header` once, `body` per chunk, `results`."""

    def __init__(self, fields: Sequence[HeaderField], now: float | None = None) -> None:
        self.fields = list(fields)
        self.now = time.time() if now is None else now
        found = [f for f in self.fields if f.key == _SIGNATURE_KEY]
        self.signatures = [self._prepare(f) for f in found[:MAX_SIGNATURES]]
        self.skipped = max(0, len(found) - MAX_SIGNATURES)
        hashers: dict[tuple[Canonicalization, int | None], _LimitedHash] = {}
        for signature in self.signatures:
            if not signature.error:
                key = (signature.canon_body, signature.length)
                signature.hasher = hashers.setdefault(key, _LimitedHash(*key))
        self._hashers = list(hashers.values())
        self._digests: dict[int, tuple[bytes, int]] = {}

    def keys_needed(self) -> list[tuple[str, str]]:
        """(selector, domain) of each key `results` will look up, so that it can be fetched first."""
        return [
            (s.tags["s"], s.tags["d"].lower())
            for s in self.signatures
            if not s.error and "s" in s.tags and "d" in s.tags
        ]

    def body(self, chunk: bytes) -> None:
        for hasher in self._hashers:
            hasher.update(chunk)

    def results(self, lookup: KeyLookup) -> list[SignatureResult]:
        for hasher in self._hashers:
            self._digests[id(hasher)] = hasher.digest()
        return [self._verify(s, lookup) for s in self.signatures]

    def _prepare(self, header: HeaderField) -> _Signature:
        try:
            tags = parse_tags(header.value)
        except _Unusable as exc:
            return _Signature(
                header, {}, Canonicalization.SIMPLE, Canonicalization.SIMPLE, None, str(exc)
            )
        canon = tags.get("c", "simple/simple")
        head_name, _, body_name = canon.partition("/")
        try:
            head_canon = Canonicalization(head_name.lower())
            body_canon = Canonicalization((body_name or "simple").lower())
        except ValueError:
            return _Signature(
                header,
                tags,
                Canonicalization.SIMPLE,
                Canonicalization.SIMPLE,
                None,
                f"c={canon}: unknown canonicalization",
            )
        length = None
        error = _check_tags(tags)
        if not error and "l" in tags:
            if not tags["l"].isdigit():
                error = f"l={tags['l']}: not a number"
            else:
                length = int(tags["l"])
        return _Signature(header, tags, head_canon, body_canon, length, error)

    def _verify(self, signature: _Signature, lookup: KeyLookup) -> SignatureResult:
        tags = signature.tags

        def result(outcome: DkimResult, reason: str) -> SignatureResult:
            return SignatureResult(
                outcome,
                tags.get("d", "").lower(),
                tags.get("s", ""),
                tags.get("a", ""),
                reason,
                signature.length,
                tags.get("b", "")[:8],
            )

        if signature.error:
            return result(DkimResult.PERMERROR, signature.error)
        assert signature.hasher is not None
        digest, body_bytes = self._digests[id(signature.hasher)]
        try:
            claimed = base64.b64decode(tags["bh"], validate=True)
            sig = base64.b64decode(tags["b"], validate=True)
        except binascii.Error:
            return result(DkimResult.PERMERROR, "b= or bh= is not base64")
        if signature.length is not None and signature.length > body_bytes:
            return result(DkimResult.FAIL, f"l={signature.length} is longer than the body")
        if claimed != digest:
            return result(DkimResult.FAIL, "body hash did not verify")
        if "x" in tags and int(tags["x"]) < self.now:
            return result(DkimResult.FAIL, "signature expired")
        try:
            records = lookup(tags["s"], tags["d"].lower())
        except KeyUnavailable as exc:
            return result(DkimResult.TEMPERROR, f"key not fetched: {exc}")
        try:
            key = _public_key(records, tags["a"])
        except _Unusable as exc:
            return result(DkimResult.PERMERROR, str(exc))
        except _Revoked:
            return result(DkimResult.FAIL, "key revoked")
        data = header_hash_input(
            _signed_fields(self.fields, tags["h"], signature.header),
            _without_b(signature.header),
            signature.canon_header,
        )
        if not _valid(key, sig, data):
            return result(DkimResult.FAIL, "signature did not verify")
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            return result(DkimResult.POLICY, f"RSA key of {key.key_size} bits (RFC 8301)")
        if signature.length is not None and signature.length < body_bytes:
            return result(
                DkimResult.PASS,
                f"l={signature.length}: {body_bytes - signature.length} body bytes not signed",
            )
        return result(DkimResult.PASS, "")


class _Revoked(Exception):
    pass


def _check_tags(tags: dict[str, str]) -> str:
    """Why the signature cannot be used (permerror), or ""."""
    for name in ("v", "a", "b", "bh", "d", "h", "s"):
        if name not in tags:
            return f"no {name}= tag"
    if tags["v"] != "1":
        return f"v={tags['v']}: not 1"
    if tags["a"] not in ("rsa-sha256", "ed25519-sha256"):
        if tags["a"] == "rsa-sha1":
            return "a=rsa-sha1: not accepted (RFC 8301)"
        return f"a={tags['a']}: unknown algorithm"
    names = [n.strip().lower() for n in tags["h"].split(":")]
    if "from" not in names:
        return "h= does not list from"
    domain = tags["d"].lower()
    if "i" in tags:
        identity = tags["i"].rpartition("@")[2].lower()
        if identity != domain and not identity.endswith("." + domain):
            return f"i={tags['i']} is not in d={domain}"
    for name in ("t", "x"):
        if name in tags and not tags[name].isdigit():
            return f"{name}={tags[name]}: not a number"
    if "t" in tags and "x" in tags and int(tags["x"]) < int(tags["t"]):
        return "x= is before t="
    return ""


def _signed_fields(fields: Sequence[HeaderField], h: str, own: HeaderField) -> list[HeaderField]:
    """The fields h= names, each name taking its instances bottom-up (RFC 6376 §5.4.2); a
    name with no instance left picks nothing. The signature itself is never signed."""
    remaining: dict[bytes, list[HeaderField]] = {}
    for each in fields:
        if each is not own:
            remaining.setdefault(each.key, []).append(each)
    chosen = []
    for name in h.split(":"):
        found = remaining.get(name.strip().lower().encode("ascii", "replace"))
        if found:
            chosen.append(found.pop())
    return chosen


def _without_b(header: HeaderField) -> HeaderField:
    """The signature field with the value of b= removed, everything else byte for byte."""
    value = _B_TAG.sub(lambda m: m[1] + m[2], header.value, count=1)
    return HeaderField(header.name, value)


def _public_key(
    records: Sequence[str], algorithm: str
) -> rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    if not records:
        raise _Unusable("no key record")
    if len(records) > 1:
        raise _Unusable("more than one key record")
    loaded = _loaded_key(records[0], algorithm)
    if isinstance(loaded, Exception):
        raise type(loaded)(*loaded.args)  # a new one: the cached one keeps no traceback
    return loaded


@functools.lru_cache(maxsize=1024)
def _loaded_key(
    record: str, algorithm: str
) -> rsa.RSAPublicKey | ed25519.Ed25519PublicKey | _Unusable | _Revoked:
    """A key record's key, or why it cannot be used; one parse per record (keys repeat)."""
    try:
        return _parse_key_record(record, algorithm)
    except (_Unusable, _Revoked) as exc:
        return exc


def _parse_key_record(record: str, algorithm: str) -> rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    try:
        tags = parse_tags(record.encode())
    except _Unusable as exc:
        raise _Unusable(f"key record: {exc}") from None
    if tags.get("v", "DKIM1") != "DKIM1":
        raise _Unusable(f"key record v={tags['v']}")
    if "p" not in tags:
        raise _Unusable("key record without p=")
    if not tags["p"]:
        raise _Revoked
    kind = tags.get("k", "rsa")
    if kind != algorithm.split("-", 1)[0]:
        raise _Unusable(f"key record k={kind} for a={algorithm}")
    try:
        data = base64.b64decode(tags["p"], validate=True)
    except binascii.Error:
        raise _Unusable("key record p= is not base64") from None
    try:
        if kind == "ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(data)
        loaded = serialization.load_der_public_key(data)
    except ValueError as exc:
        raise _Unusable(f"key record p= is not a key ({exc})") from None
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise _Unusable("key record p= is not an RSA key")
    return loaded


def _valid(key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey, sig: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, hashlib.sha256(data).digest())  # RFC 8463 §3
        else:
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
