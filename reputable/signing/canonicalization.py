"""DKIM canonicalization (RFC 6376 §3.4): header fields one by one, the body as a stream. Pure.

The body path is hot (messages of tens of megabytes), so it works on whole
chunks with bytes methods and compiled regexes, never byte by byte, and carries
at most two bytes from one chunk to the next.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

from reputable.signing.headers import HeaderField

CRLF = b"\r\n"
_WSP = b" \t"
_WSP_RUN = re.compile(rb"[ \t]+")
_SP_RUN = re.compile(rb"  +")
_TAB_TO_SP = bytes.maketrans(b"\t", b" ")
# Each bytes.replace() pass halves every run of SPs: a few passes squeeze the short runs
# of ordinary text at memchr speed, the regex then takes the rare long ones.
_SQUEEZE_PASSES = 4
_FIRST_WINDOW = 64

Piece = bytes | memoryview


class Canonicalization(StrEnum):
    """A c= half (RFC 6376 §3.4)."""

    SIMPLE = "simple"
    RELAXED = "relaxed"


def canonicalize_header(field: HeaderField, canon: Canonicalization) -> bytes:
    """b"name:value\\r\\n" as hashed (RFC 6376 §3.4.1 simple, §3.4.2 relaxed)."""
    if canon is Canonicalization.SIMPLE:
        return field.name + b":" + field.value + CRLF
    # Relaxed: lower-case name, unfold, WSP runs to one SP, no WSP at the end of the
    # value nor around the colon. Bare LFs are unfolded too, as dkimpy does, so a
    # value that kept milter-style LF folds still canonicalizes the same.
    value = field.value.replace(CRLF, b"").replace(b"\n", b"")
    return field.key + b":" + _WSP_RUN.sub(b" ", value).strip(_WSP) + CRLF


class BodyCanonicalizer:
    """Canonicalizes a body fed in chunks of any size (RFC 6376 §3.4.3, §3.4.4).

    Concatenating every feed() result and finish() gives exactly the one-shot result:
    the body with its trailing empty lines removed and one CRLF ending it; for
    simple an empty body is one CRLF, for relaxed it stays empty.
    """

    __slots__ = ("_carry", "_finished", "_pending", "_relaxed", "_started")

    def __init__(self, canon: Canonicalization) -> None:
        self._relaxed = canon is Canonicalization.RELAXED
        # Input the next chunk may still change: a final CR (half a CRLF?) and, for
        # relaxed, the WSP run before it squeezed to one SP (it may end the line).
        self._carry = b""
        # CRLFs ending the output so far, held back: they are empty lines until
        # something other than a CRLF follows, and trailing empty lines are dropped.
        self._pending = 0
        self._started = False  # anything other than held-back CRLFs was output
        self._finished = False

    def feed(self, chunk: bytes) -> bytes:
        """The canonical bytes that are final once `chunk` is added."""
        return b"".join(self.feed_pieces(chunk))

    def feed_pieces(self, chunk: bytes) -> list[Piece]:
        """What feed() returns, in pieces that are not copied into one (for hashing)."""
        if self._finished:
            raise ValueError("body canonicalizer fed after finish()")
        data = self._carry + chunk if self._carry else chunk
        ready, self._carry = _split_carry(data, self._relaxed)
        return self._emit(_relax(ready) if self._relaxed else ready)

    def finish(self) -> bytes:
        """The rest: what the carry turns into at the end, and the one final CRLF."""
        if self._finished:
            raise ValueError("body canonicalizer finished twice")
        self._finished = True
        # A WSP run at the very end without a CRLF after it is not "at the end of a
        # line", so relaxed keeps it as one SP before the added CRLF (dkimpy agrees).
        pieces = self._emit(self._carry)
        self._carry = b""
        if self._started or not self._relaxed:
            pieces.append(CRLF)
        return b"".join(pieces)

    def _emit(self, data: bytes) -> list[Piece]:
        crlfs = _trailing_crlfs(data)
        end = len(data) - 2 * crlfs
        if end == 0:
            self._pending += crlfs
            return []
        held, self._pending, self._started = self._pending, crlfs, True
        body = memoryview(data)[:end] if crlfs else data
        return [CRLF * held, body] if held else [body]


class BodyHasher:
    """SHA-256 of the canonical body, updated chunk by chunk (the bh= value, RFC 6376 §3.7)."""

    __slots__ = ("_canonicalizer", "_digest", "_hash")

    def __init__(self, canon: Canonicalization) -> None:
        self._canonicalizer = BodyCanonicalizer(canon)
        self._hash = hashlib.sha256()
        self._digest: bytes | None = None

    def update(self, chunk: bytes) -> None:
        for piece in self._canonicalizer.feed_pieces(chunk):
            self._hash.update(piece)

    def digest(self) -> bytes:
        """Ends the body (further updates raise ValueError); later calls return the same digest."""
        if self._digest is None:
            self._hash.update(self._canonicalizer.finish())
            self._digest = self._hash.digest()
        return self._digest


def _split_carry(data: bytes, relaxed: bool) -> tuple[bytes, bytes]:
    """`data` as (bytes whose canonical form is known, carry for the next chunk)."""
    cr = data.endswith(b"\r")
    end = len(data) - cr
    wsp = _trailing_run(data, end, _WSP) if relaxed else 0
    carry = (b" " if wsp else b"") + (b"\r" if cr else b"")
    cut = end - wsp
    return (data[:cut] if cut < len(data) else data), carry


def _relax(data: bytes) -> bytes:
    """Relaxed body WSP rules (§3.4.4 a); `data` never ends inside a WSP run.

    Every WSP run becomes one SP, then an SP before a CRLF goes: the same as removing
    end-of-line WSP first. Tabs turn into SPs first, which changes no run's outcome.
    """
    if b"\t" in data:
        data = data.translate(_TAB_TO_SP)
    return _squeeze(data).replace(b" \r\n", CRLF)


def _squeeze(data: bytes) -> bytes:
    for _ in range(_SQUEEZE_PASSES):
        squeezed = data.replace(b"  ", b" ")
        if len(squeezed) == len(data):
            return data
        data = squeezed
    return _SP_RUN.sub(b" ", data) if b"  " in data else data


def _trailing_crlfs(data: bytes) -> int:
    """How many CRLF pairs end `data`."""
    tail = data[len(data) - _trailing_run(data, len(data), b"\r\n") :]
    if not tail.endswith(b"\n"):
        return 0
    # In a run of CR and LF, the CRLF pairs at the end alternate CR, LF: they start
    # after the last doubled byte, and an odd-length alternation starts with a lone LF.
    start = max(tail.rfind(b"\r\r"), tail.rfind(b"\n\n")) + 1
    return (len(tail) - start) // 2


def _trailing_run(data: bytes, end: int, chars: bytes) -> int:
    """Length of the run of `chars` ending at data[end], found through a growing window."""
    size = _FIRST_WINDOW
    while True:
        start = max(0, end - size)
        kept = len(data[start:end].rstrip(chars))
        if kept or start == 0:
            return end - start - kept
        size *= 4
