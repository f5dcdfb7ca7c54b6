"""ARC chain validation of a received message (RFC 8617 §5.2). Pure but for the key lookup,
which the caller supplies, as for DKIM (`reputable.verify.signatures`).

An `ArcVerifier` takes the header fields, then the body in chunks of any size, then
fetches the keys and gives one verdict for the whole Authenticated Received Chain:

* none: the message carries no ARC header field;
* fail: the chain is malformed (an ARC set missing, incomplete, duplicated or out of
  sequence, more than 50 of them, a seal whose cv= is not what its place demands, the
  newest seal saying cv=fail), the newest ARC-Message-Signature or any ARC-Seal does not
  verify, or a key cannot be had;
* pass: all of it verifies.

Only the newest ARC-Message-Signature is verified, like a DKIM signature: older ones
may well have been broken by the very hops the chain vouches for, and the seals cover
them. The body is hashed only when there is a chain to verify, and then once, for that
signature. The optional oldest-pass (§5.2 step 5) is not computed, and whether a sealer
is trusted is the caller's policy, not a matter for this module.

This module only reads chains: it never seals a message nor adds an ARC set of its own.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.signing.canonicalization import Canonicalization
from reputable.signing.headers import HeaderField
from reputable.signing.signer import header_hash_input
from reputable.verify.signatures import (
    MIN_RSA_BITS,
    KeyLookup,
    KeyUnavailable,
    _LimitedHash,
    _public_key,
    _Revoked,
    _signed_fields,
    _Unusable,
    _valid,
    _without_b,
    parse_tags,
)

MAX_INSTANCES = 50  # RFC 8617 §4.2.1
_AAR = b"arc-authentication-results"
_AMS = b"arc-message-signature"
_SEAL = b"arc-seal"
_NAMES = {_AAR: "ARC-Authentication-Results", _AMS: "ARC-Message-Signature", _SEAL: "ARC-Seal"}
# An AAR is "i=N; " and then an Authentication-Results value, not a tag list (§4.1.1).
_AAR_INSTANCE = re.compile(rb"\A[ \t\r\n]*i[ \t\r\n]*=[ \t\r\n]*([0-9]+)[ \t\r\n]*;")
_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")  # RFC 8617 §4.1.3 needs rsa-sha256 alone
_AMS_TAGS = ("a", "b", "bh", "d", "h", "s")  # and i=, read already; no v= (§4.1.2)
_SEAL_TAGS = ("a", "b", "cv", "d", "s")  # and i=

_PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class ArcResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ArcVerdict:
    result: ArcResult
    instances: int  # how many ARC sets (distinct readable i= values) the message carries
    signer: str  # d= of the newest ARC-Seal, lower case; "" when none or unreadable
    reason: str  # why, in a few words ("" for a plain pass or none)
    aar: str = ""  # the newest ARC-Authentication-Results value, unfolded; "" when none


class _Broken(Exception):
    """The chain fails; the text says why."""


@dataclass(frozen=True, slots=True)
class _Part:
    """One ARC header field with its instance number and, but for an AAR, its tags."""

    kind: bytes
    instance: int
    field: HeaderField
    tags: dict[str, str]

    @property
    def label(self) -> str:
        return f"{_NAMES[self.kind]} i={self.instance}"


@dataclass(frozen=True, slots=True)
class _Set:
    """ARC set i=instance: its three fields, one of each."""

    instance: int
    aar: _Part
    ams: _Part
    seal: _Part


@dataclass(frozen=True, slots=True)
class _Ams:
    """The newest ARC-Message-Signature, ready to verify."""

    part: _Part
    canon_header: Canonicalization
    canon_body: Canonicalization
    length: int | None


class ArcVerifier:
    """Validate the ARC chain of one message: fields once, `body` per chunk, `result`."""

    def __init__(self, fields: Sequence[HeaderField], now: float | None = None) -> None:
        self.fields = list(fields)
        self.now = time.time() if now is None else now
        self.sets: list[_Set] = []
        self.instances = 0
        self.signer = ""
        self.aar = ""
        self.error = ""  # set: the chain fails before anything is hashed
        self._present = any(f.key in _NAMES for f in self.fields)
        self._ams: _Ams | None = None
        self._hasher: _LimitedHash | None = None
        self._digest: tuple[bytes, int] | None = None
        if self._present:
            self._inspect()

    def keys_needed(self) -> list[tuple[str, str]]:
        """(selector, domain) of every key `result` may look up, each once, in the order it
        asks for them (it stops at the first failure); [] when there is nothing to verify."""
        if self._ams is None:
            return []
        tags = [self._ams.part.tags, *(s.seal.tags for s in reversed(self.sets))]
        return list(dict.fromkeys(_where(t) for t in tags))

    def body(self, chunk: bytes) -> None:
        if self._hasher is not None:
            self._hasher.update(chunk)

    def result(self, lookup: KeyLookup) -> ArcVerdict:
        if not self._present:
            return ArcVerdict(ArcResult.NONE, 0, "", "")
        if self.error:
            return self._verdict(ArcResult.FAIL, self.error)
        keys = _Keys(lookup)
        try:
            reason = self._verify_ams(keys)
            for arc_set in reversed(self.sets):
                self._verify_seal(arc_set, keys)
        except _Broken as exc:
            return self._verdict(ArcResult.FAIL, str(exc))
        return self._verdict(ArcResult.PASS, reason)

    def _verdict(self, result: ArcResult, reason: str) -> ArcVerdict:
        return ArcVerdict(result, self.instances, self.signer, reason, self.aar)

    def _inspect(self) -> None:
        """Reads the chain and checks its structure (§5.2 steps 1 to 3); readies the hash."""
        parts, error = _read_parts(self.fields)
        self._describe(parts)
        try:
            if error:
                raise _Broken(error)
            self.sets = _chain(parts)
            self._ams = _prepare_ams(self.sets[-1].ams, self.now)
        except _Broken as exc:
            self.error = str(exc)
            self._ams = None
            return
        self._hasher = _LimitedHash(self._ams.canon_body, self._ams.length)

    def _describe(self, parts: list[_Part]) -> None:
        """instances, signer and aar, from what could be read even of a broken chain."""
        if not parts:
            return
        self.instances = len({p.instance for p in parts})
        newest = max(p.instance for p in parts)
        for part in parts:
            if part.instance != newest:
                continue
            if part.kind == _SEAL and not self.signer:
                self.signer = part.tags.get("d", "").lower()
            if part.kind == _AAR and not self.aar:
                self.aar = _unfold(part.field.value)

    def _body_digest(self) -> tuple[bytes, int]:
        if self._digest is None:
            assert self._hasher is not None
            self._digest = self._hasher.digest()
        return self._digest

    def _verify_ams(self, keys: _Keys) -> str:
        """§5.2 step 4, as DKIM verifies (RFC 6376 §6.1.3); the reason of a pass."""
        assert self._ams is not None
        ams = self._ams
        tags, label = ams.part.tags, ams.part.label
        claimed = _base64(tags["bh"], label, "bh")
        signature = _base64(tags["b"], label, "b")
        digest, body_bytes = self._body_digest()
        if ams.length is not None and ams.length > body_bytes:
            raise _Broken(f"{label}: l={ams.length} is longer than the body")
        if claimed != digest:
            raise _Broken(f"{label}: body hash did not verify")
        key = keys.get(tags, label)
        data = header_hash_input(
            _signed_fields(self.fields, tags["h"], ams.part.field),
            _without_b(ams.part.field),
            ams.canon_header,
        )
        if not _valid(key, signature, data):
            raise _Broken(f"{label}: signature did not verify")
        if ams.length is not None and ams.length < body_bytes:
            return f"l={ams.length}: {body_bytes - ams.length} body bytes not signed"
        return ""

    def _verify_seal(self, arc_set: _Set, keys: _Keys) -> None:
        """§5.2 step 6 for one seal: it signs, relaxed, the sets 1 to i in order, each as
        AAR, AMS, AS, its own b= value emptied (§5.1.1)."""
        seal = arc_set.seal
        signature = _base64(seal.tags["b"], seal.label, "b")
        key = keys.get(seal.tags, seal.label)
        signed = [
            part.field
            for earlier in self.sets[: arc_set.instance - 1]
            for part in (earlier.aar, earlier.ams, earlier.seal)
        ]
        signed += [arc_set.aar.field, arc_set.ams.field]
        data = header_hash_input(signed, _without_b(seal.field), Canonicalization.RELAXED)
        if not _valid(key, signature, data):
            raise _Broken(f"{seal.label}: signature did not verify")


class _Keys:
    """Keys through the caller's lookup, each (selector, domain) fetched once."""

    def __init__(self, lookup: KeyLookup) -> None:
        self.lookup = lookup
        self.records: dict[tuple[str, str], Sequence[str]] = {}

    def get(self, tags: dict[str, str], label: str) -> _PublicKey:
        where = _where(tags)
        if where not in self.records:
            try:
                self.records[where] = self.lookup(*where)
            except KeyUnavailable as exc:
                # RFC 8617 has no temperror: a chain whose key cannot be fetched now fails,
                # and the reason says the failure was a temporary one.
                raise _Broken(
                    f"{label}: key {where[0]}._domainkey.{where[1]} not fetched (temporary): {exc}"
                ) from None
        try:
            key = _public_key(self.records[where], tags["a"])
        except _Unusable as exc:
            raise _Broken(f"{label}: {exc}") from None
        except _Revoked:
            raise _Broken(f"{label}: key revoked") from None
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise _Broken(f"{label}: RSA key of {key.key_size} bits (RFC 8301)")
        return key


def _where(tags: dict[str, str]) -> tuple[str, str]:
    return tags["s"], tags["d"].lower()


def _read_parts(fields: Sequence[HeaderField]) -> tuple[list[_Part], str]:
    """Every readable ARC field, and why the first unreadable one is not ("" if none is)."""
    parts: list[_Part] = []
    error = ""
    for field in fields:
        if field.key not in _NAMES:
            continue
        try:
            parts.append(_read_part(field))
        except _Broken as exc:
            error = error or str(exc)
    return parts, error


def _read_part(field: HeaderField) -> _Part:
    name = _NAMES[field.key]
    tags: dict[str, str] = {}
    if field.key == _AAR:
        match = _AAR_INSTANCE.match(field.value)
        number = match[1].decode("ascii") if match else ""
    else:
        try:
            tags = parse_tags(field.value)
        except _Unusable as exc:
            raise _Broken(f"{name}: {exc}") from None
        number = tags.get("i", "")
    if not number.isdigit() or not 1 <= int(number) <= MAX_INSTANCES:
        raise _Broken(f"{name} i={number or '?'}: not an instance from 1 to {MAX_INSTANCES}")
    return _Part(field.key, int(number), field, tags)


def _chain(parts: list[_Part]) -> list[_Set]:
    """The sets 1 to N, each of one AAR, AMS and AS, every seal with the cv= its place
    demands (§5.2 steps 2 and 3); raises _Broken when the chain is not so."""
    found: dict[int, dict[bytes, list[_Part]]] = {}
    for part in parts:
        found.setdefault(part.instance, {}).setdefault(part.kind, []).append(part)
    newest = max(found)
    if any(_cv(seal) == "fail" for seal in found[newest].get(_SEAL, [])):
        raise _Broken(f"ARC-Seal i={newest} says cv=fail: the chain had failed already")
    sets = [_one_set(instance, found.get(instance, {})) for instance in range(1, newest + 1)]
    for arc_set in sets:
        expected = "none" if arc_set.instance == 1 else "pass"
        if _cv(arc_set.seal) != expected:
            raise _Broken(f"{arc_set.seal.label} says cv={_cv(arc_set.seal)}, not {expected}")
    return sets


def _one_set(instance: int, kinds: dict[bytes, list[_Part]]) -> _Set:
    if not kinds:
        raise _Broken(f"no ARC set i={instance}")
    chosen: dict[bytes, _Part] = {}
    for kind, name in _NAMES.items():
        found = kinds.get(kind, [])
        if len(found) != 1:
            raise _Broken(f"{'no' if not found else 'more than one'} {name} i={instance}")
        chosen[kind] = found[0]
    _check_seal(chosen[_SEAL])
    return _Set(instance, chosen[_AAR], chosen[_AMS], chosen[_SEAL])


def _cv(seal: _Part) -> str:
    return seal.tags.get("cv", "").lower()


def _check_seal(seal: _Part) -> None:
    _require(seal, _SEAL_TAGS)
    if "h" in seal.tags:
        raise _Broken(f"{seal.label} has an h= tag")  # §4.1.3: a seal names no fields


def _prepare_ams(part: _Part, now: float) -> _Ams:
    """The newest AMS with its tags checked as DKIM checks a signature's (RFC 6376 §6.1.1)."""
    _require(part, _AMS_TAGS)
    tags, label = part.tags, part.label
    names = [name.strip().lower() for name in tags["h"].split(":")]
    if "arc-seal" in names:
        raise _Broken(f"{label}: h= lists arc-seal")  # §4.1.2
    if "from" not in names:
        raise _Broken(f"{label}: h= does not list from")
    # The DKIM default, simple/simple: the AMS has the DKIM-Signature's semantics (§4.1.2).
    # (dkimpy assumes relaxed/relaxed instead; its own seals always carry c=.)
    canon = tags.get("c", "simple/simple")
    head_name, _, body_name = canon.partition("/")
    try:
        canon_header = Canonicalization(head_name.lower())
        canon_body = Canonicalization((body_name or "simple").lower())
    except ValueError:
        raise _Broken(f"{label}: c={canon}: unknown canonicalization") from None
    for name in ("l", "t", "x"):
        if name in tags and not tags[name].isdigit():
            raise _Broken(f"{label}: {name}={tags[name]}: not a number")
    if "x" in tags and int(tags["x"]) < now:
        raise _Broken(f"{label}: expired")
    length = int(tags["l"]) if "l" in tags else None
    return _Ams(part, canon_header, canon_body, length)


def _require(part: _Part, names: Sequence[str]) -> None:
    for name in names:
        if name not in part.tags:
            raise _Broken(f"{part.label}: no {name}= tag")
    algorithm = part.tags["a"]
    if algorithm not in _ALGORITHMS:
        raise _Broken(f"{part.label}: a={algorithm}: not accepted")


def _base64(value: str, label: str, tag: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise _Broken(f"{label}: {tag}= is not base64") from None


def _unfold(value: bytes) -> str:
    return re.sub(rb"\r?\n", b"", value).strip(b" \t").decode("utf-8", "replace")
