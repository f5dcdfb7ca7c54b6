"""Fuzzing the message path: arbitrary header fields, bodies and chunkings, through the engine.

Each example is one message from an internal client, as Postfix passes it:
header fields whole (value lines joined by LF and folding white space), the
body's lines ending in CRLF, body chunks and reads cut anywhere. Whatever they
hold, the message is either signed so that dkimpy verifies the message as
Postfix delivers it, or passed with a reason logged; never an error.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import dkim
from hypothesis import event, given

from reputable.milter import protocol as p
from tests.unit.milter.fuzzing import (
    OPTIONS,
    Recipe,
    feed,
    fuzz_slow,
    open_connection,
    recipes,
    recorded,
    signing_holder,
)
from tests.unit.milter.test_connection import connect, end_of_headers, macros, mail
from tests.unit.milter.test_session import dns_for

NAMES = [b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Reply-To", b"X-Mailer", b"from"]
# The characters of a field name (RFC 5322 ftext: printable US-ASCII but the colon).
FTEXT = bytes(c for c in range(33, 127) if c != ord(":"))
AUTHORS = [
    b" Alice <alice@example.com>",
    b" alice@example.com",
    b' "Al, Ice" <alice@EXAMPLE.com>',
    b" bob@example.net",
    b" <>",
    b" a@example.com, b@example.com",
    b"alice@example.com",
]


def field_name(recipe: Recipe) -> bytes:
    if recipe.byte() % 3 != 2:
        return bytes(recipe.pick(NAMES))
    name = bytes(FTEXT[b % len(FTEXT)] for b in recipe.text(20))
    return name or b"X"


def field_value(recipe: Recipe, name: bytes) -> bytes:
    """A value as Postfix passes it: its lines joined by LF, each after the first folded."""
    if name.lower() == b"from" and recipe.byte() % 4 != 3:
        return bytes(recipe.pick(AUTHORS))
    lines = [line(recipe, 60) for _ in range(1 + recipe.byte() % 3)]
    folds = [recipe.pick([b" ", b"\t", b"  "]) for _ in lines[1:]]
    value = lines[0] + b"".join(
        b"\n" + fold + rest for fold, rest in zip(folds, lines[1:], strict=True)
    )
    return value if value.startswith((b" ", b"\t")) or not recipe.byte() % 5 else b" " + value


def line(recipe: Recipe, most: int) -> bytes:
    """A header line's bytes: anything but LF, NUL (which the milter protocol cannot carry),
    and CR, VT, FF. RFC 5322 allows none of those three in a header; dkimpy's relaxed
    canonicalization strips them (Python's strip()) where RFC 6376 strips only SP and HTAB,
    so at a value's ends they make dkimpy, not the signer, disagree."""
    return recipe.text(most).translate(_NOT_IN_HEADERS)


_NOT_IN_HEADERS = bytes.maketrans(b"\n\r\x0b\x0c", b"    ")


def body_line(recipe: Recipe) -> bytes:
    """A body line's bytes: anything but LF and NUL (a bare CR stays in its line)."""
    return recipe.text(200).replace(b"\n", b" ")


def body_of(recipe: Recipe) -> bytes:
    lines = [body_line(recipe) for _ in range(recipe.byte() % 12)]
    body = b"".join(text + b"\r\n" for text in lines)
    if recipe.byte() % 16 == 15:  # now and then past one body chunk
        body *= 1 + 66_000 // max(1, len(body))
    return body


def delivered(
    replies: list[tuple[bytes, bytes]], fields: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """The message as Postfix delivers it: fields inserted on top, then the original, in CRLF."""
    added = b""
    for code, data in replies:
        if code == b"i":
            name, value, _ = data[4:].split(b"\0")
            added += (name + b":" + value).replace(b"\n", b"\r\n") + b"\r\n"
    original = b"".join(n + b":" + v.replace(b"\n", b"\r\n") + b"\r\n" for n, v in fields)
    return added + original + b"\r\n" + body


@fuzz_slow
@given(recipes)
def test_every_message_is_signed_so_that_it_verifies_or_passed_with_a_reason(
    keys_dir: Path, loop: asyncio.AbstractEventLoop, data: bytes
) -> None:
    holder = signing_holder(keys_dir)
    recipe = Recipe(data)
    splits = recipe.read_sizes()
    fields = []
    for _ in range(recipe.byte() % 10):
        name = field_name(recipe)
        fields.append((name, field_value(recipe, name)))
    if recipe.byte() % 8 != 7:  # mostly, one author of ours among them
        fields.insert(recipe.byte() % (len(fields) + 1), (b"From", recipe.pick(AUTHORS[:3])))
    body = body_of(recipe)
    chunk = 1 + recipe.byte() * recipe.byte() % p.MAX_PACKET
    connection, transport = open_connection(holder, loop)
    start = [OPTIONS, connect(), *mail(), p.packet(b"T")]
    start += [p.packet(b"L", name + b"\0" + value + b"\0") for name, value in fields]
    with recorded(logging.INFO) as log:
        feed(connection, b"".join(start + end_of_headers("F1")), splits)
        replies = transport.replies()
        if replies[-1] == (b"c", b""):  # to be signed: the body is wanted
            transport.written.clear()
            chunks = [p.packet(b"B", body[i : i + chunk]) for i in range(0, len(body), chunk)]
            feed(connection, b"".join([*chunks, macros(b"E", i="F1"), p.packet(b"E")]), splits)
            replies = transport.replies()
        connection.connection_lost(None)
    lines = [line for line in log.lines if "action" in line]
    assert log.faults() == [] and len(lines) == 1, log.lines
    (logged,) = lines
    event(f"reason={logged['reason']}" if logged["dkim"] == "none" else "signed")
    if logged["dkim"] == "none":
        assert logged["reason"], logged
        assert replies[-1] == (b"a", b"")
        return
    assert [code for code, _ in replies] == [b"i", b"a"]
    message = delivered(replies, fields, body)
    assert dkim.DKIM(message).verify(dnsfunc=dns_for(holder.current)), message
