"""Whole messages in bytes, split into header fields and body (`sign` filter, tests). Pure.

Bytes stay bytes: 8-bit text, invalid UTF-8 and NULs are kept as they came, never
decoded. Only line ends change: lone LFs become CRLF, as DKIM hashes them (RFC 6376
§3.4 works on the CRLF form of RFC 5322 §2.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from reputable.signing.headers import HeaderField

CRLF = b"\r\n"
LF = b"\n"
# RFC 5322 §3.6.8 field-name: printable ASCII but ":"; WSP before the colon is the
# obsolete syntax of §4.5.3, still accepted and kept in the name.
_FIELD_NAME = re.compile(rb"[!-9;-~]+[ \t]*")
_SHOWN = 60


class MessageFormatError(ValueError):
    """The input is not a message; the text says what is wrong and on which line."""


@dataclass(frozen=True, slots=True)
class RawMessage:
    fields: tuple[HeaderField, ...]  # values with CRLF folds
    body: bytes  # CRLF line ends; a final line without one is kept as it was
    line_ending: bytes  # b"\n" or b"\r\n": what the input mostly used, so output can match


def parse_message(data: bytes) -> RawMessage:
    """Splits `data` at the first empty line; raises MessageFormatError if it is not a message."""
    if not data:
        raise MessageFormatError("empty input: a message starts with header fields")
    text = data.replace(CRLF, LF).replace(LF, CRLF)
    head, body = _split(text)
    return RawMessage(_fields(head), body, _line_ending(data))


def render_message(fields: Sequence[HeaderField], body: bytes, line_ending: bytes = CRLF) -> bytes:
    """The message bytes: `fields`, an empty line, `body`; CRLFs turned into `line_ending`."""
    head = b"".join(f.name + b":" + f.value + CRLF for f in fields)
    text = head + CRLF + body
    return text if line_ending == CRLF else text.replace(CRLF, line_ending)


def _line_ending(data: bytes) -> bytes:
    crlf = data.count(CRLF)
    return CRLF if crlf > data.count(LF) - crlf else LF


def _split(text: bytes) -> tuple[bytes, bytes]:
    """(header block with the CRLF of its last line, body)."""
    if text.startswith(CRLF):
        raise MessageFormatError("line 1: empty, but a message starts with a header field")
    end = text.find(CRLF + CRLF)
    if end < 0:
        return text, b""  # header fields only: the body is empty
    return text[: end + 2], text[end + 4 :]


def _fields(head: bytes) -> tuple[HeaderField, ...]:
    lines = head.split(CRLF)
    if not lines[-1]:
        lines.pop()  # the CRLF ending the last field
    fields: list[tuple[bytes, list[bytes]]] = []
    for number, line in enumerate(lines, start=1):
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MessageFormatError(
                    f"line 1: starts with whitespace, continuing no header field: {_show(line)}"
                )
            fields[-1][1].append(line)  # RFC 5322 §2.2.3: a folded line continues the field
        else:
            fields.append(_field_start(number, line))
    return tuple(HeaderField(name, CRLF.join(parts)) for name, parts in fields)


def _field_start(number: int, line: bytes) -> tuple[bytes, list[bytes]]:
    name, colon, value = line.partition(b":")
    if not colon:
        raise MessageFormatError(f"line {number}: header line without a colon: {_show(line)}")
    if not _FIELD_NAME.fullmatch(name):
        raise MessageFormatError(f"line {number}: not a header field name: {_show(name)}")
    return name, [value]


def _show(data: bytes) -> str:
    return repr(data[:_SHOWN]) + ("..." if len(data) > _SHOWN else "")
