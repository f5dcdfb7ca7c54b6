"""Header fields for DKIM: which ones a signature covers, and its own folded field. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SIGNATURE_NAME = b"DKIM-Signature"
MIN_WIDTH = 20  # room for "DKIM-Signature: v=1;" on the first line

_WSP = b" \t"
_BASE64_TAGS = frozenset({"b", "bh"})
# RFC 6376 §3.2: tag-name = ALPHA *ALNUMPUNC; tag-value = tval *(WSP tval), tval = 1*VALCHAR.
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TAG_VALUE = re.compile(r"(?:[!-:<-~]+(?:[ \t]+[!-:<-~]+)*)?")


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field exactly as received.

    `name` is the bytes before the colon (any WSP before the colon included, so
    that simple canonicalization stays byte-exact). `value` is everything after
    the colon: its leading space, folds as b"\\r\\n" + WSP, no final CRLF.
    """

    name: bytes
    value: bytes

    @property
    def key(self) -> bytes:
        """The name as compared: case-insensitive (RFC 5322 §1.2.2), no WSP before the colon."""
        return self.name.rstrip(_WSP).lower()


def select_headers(
    fields: Sequence[HeaderField], names: Sequence[str], oversign: Sequence[str]
) -> tuple[list[str], list[HeaderField]]:
    """The h= names and, in the same order, the fields they pick (RFC 6376 §5.4.2).

    Each name picks every instance present, bottom-up, as a verifier will. A name
    in `oversign` is listed once more than it occurs: a verifier finds no instance
    for the extra entry and hashes nothing for it, so a field of that name added
    later breaks the signature (RFC 6376 §8.15).
    """
    present = _by_name(fields)
    extra = {name.lower() for name in oversign}
    h: list[str] = []
    chosen: list[HeaderField] = []
    for name in dict.fromkeys(name.lower() for name in [*names, *oversign]):
        found = present.get(name.encode("ascii"), [])
        h.extend([name] * (len(found) + (name in extra)))
        chosen.extend(reversed(found))
    return h, chosen


def _by_name(fields: Sequence[HeaderField]) -> dict[bytes, list[HeaderField]]:
    index: dict[bytes, list[HeaderField]] = {}
    for field in fields:
        index.setdefault(field.key, []).append(field)
    return index


FOLD = b"\r\n\t"  # where fold_signature breaks a line: CRLF, then a tab


def fold_signature(tags: Sequence[tuple[str, str]], width: int = 78) -> bytes:
    """The DKIM-Signature value for `tags`, in order, folded so no line exceeds `width`.

    The first line counts "DKIM-Signature:". Folds are CRLF + HTAB. A tag that does
    not fit where it would go starts a new line; b= and bh= are then broken anywhere
    after the "=" and h= after a colon, which RFC 6376 §3.5 allows (FWS in base64 and
    around colons). Layout depends on value lengths only, never on their characters,
    so a b= placeholder folds exactly as the real signature will (see signer.py).
    A single unbreakable tag longer than a line is left long: nothing may fold it.
    """
    if width < MIN_WIDTH:
        raise ValueError(f"fold width {width} is below the minimum of {MIN_WIDTH}")
    lines = [SIGNATURE_NAME.decode("ascii") + ":"]
    for i, (name, value) in enumerate(tags):
        _check_tag(name, value)
        end = ";" if i < len(tags) - 1 else ""
        _place(lines, name, value, end, width)
    return "\r\n".join(lines)[len(SIGNATURE_NAME) + 1 :].encode("ascii")


def _check_tag(name: str, value: str) -> None:
    if not _TAG_NAME.fullmatch(name):
        raise ValueError(f"invalid DKIM tag name {name!r}")
    if not _TAG_VALUE.fullmatch(value):
        raise ValueError(f"invalid value for DKIM tag {name}=: {value!r} (printable ASCII, no ';')")


def _atoms(name: str, value: str, end: str) -> list[str]:
    """The pieces a tag may be broken into: between any two of them a fold is allowed."""
    if name == "h" and ":" in value:
        *first, last = value.split(":")
        return [f"h={first[0]}:", *(f"{part}:" for part in first[1:]), last + end]
    return [f"{name}={value}{end}"]


def _place(lines: list[str], name: str, value: str, end: str, width: int) -> None:
    """Appends one tag: on this line, else whole on a new line, else broken between atoms.

    Base64 values (b=, bh=) may break after any character: they fill each line
    to `width` in slices (the hot path of every signature, so no per-character loop).
    """
    if len(lines[-1]) + 2 + len(name) + len(value) + len(end) <= width:
        lines[-1] += f" {name}={value}{end}"
        return
    lines.append("\t")
    if name in _BASE64_TAGS:
        lines[-1] += f"{name}="
        _fill(lines, value + end, width)
        return
    for atom in _atoms(name, value, end):
        if lines[-1] != "\t" and len(lines[-1]) + len(atom) > width:
            lines.append("\t")
        lines[-1] += atom


def _fill(lines: list[str], text: str, width: int) -> None:
    while text:
        room = width - len(lines[-1])
        if room <= 0:
            lines.append("\t")
            continue
        lines[-1] += text[:room]
        text = text[room:]
