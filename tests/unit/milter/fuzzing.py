"""What the protocol fuzzing shares: its hypothesis profiles and an MTA connection without sockets.

Profiles: ``fuzz`` (the default, run in CI: 10,000 examples per property),
``fuzz-quick`` (1,000: the second run of the unit tests, on Debian's own
libraries) and ``fuzz-long`` (1,000,000, run by hand)::

    REPUTABLE_FUZZ_PROFILE=fuzz-long .venv/bin/pytest -q -p no:cacheprovider \\
        tests/unit/milter/test_fuzz.py tests/unit/milter/test_fuzz_message.py

The connection is the real `MilterConnection` with its real sessions, fed the
way the event loop feeds it (reads into `get_buffer`, cut anywhere), writing
into a list instead of a socket; nothing here waits, so thousands of
examples take seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import struct
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from reputable.config import Config, SigningConfig
from reputable.log import record_fields
from reputable.milter import protocol as p
from reputable.milter.connection import MilterConnection
from reputable.milter.session import Session
from reputable.runtime import RuntimeHolder, load_runtime
from reputable.signing.algorithm import Algorithm

settings.register_profile(
    "fuzz",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz-long", parent=settings.get_profile("fuzz"), max_examples=1_000_000, database=None
)
settings.register_profile(  # the unit tests on Debian's own libraries (make test-debian-libs)
    "fuzz-quick", parent=settings.get_profile("fuzz"), max_examples=1_000
)
fuzz = settings.get_profile(os.environ.get("REPUTABLE_FUZZ_PROFILE", "fuzz"))
# A slower property (each example signs and verifies): a fifth as many examples.
fuzz_slow = settings(fuzz, max_examples=max(1, fuzz.max_examples // 5))

FAULTS = frozenset({"error", "internal_error"})
OPTIONS = p.packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))  # what Postfix offers


class Transport:
    """The little of an asyncio transport a connection uses; what is written is kept."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def replies(self) -> list[tuple[bytes, bytes]]:
        reader = p.PacketReader()
        reader.add(bytes(self.written))
        out = []
        while (item := reader.next()) is not None:
            out.append((bytes([item[0]]), item[1]))
        return out


class Recorder(logging.Handler):
    """The fields of every line the milter logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record_fields(record))

    def events(self) -> list[object]:
        return [line.get("event") for line in self.lines if "event" in line]

    def faults(self) -> list[dict[str, object]]:
        return [line for line in self.lines if line.get("event") in FAULTS]


@contextlib.contextmanager
def recorded(level: int = logging.WARNING) -> Iterator[Recorder]:
    log = logging.getLogger("reputable")
    recorder = Recorder()
    before = log.level
    log.addHandler(recorder)
    log.setLevel(level)
    try:
        yield recorder
    finally:
        log.removeHandler(recorder)
        log.setLevel(before)


@functools.cache
def signing_holder(keys_dir: Path) -> RuntimeHolder:
    """Signs example.com with Ed25519 only (e1): a signature costs microseconds. Shared."""
    signing = SigningConfig(
        domains=("example.com",), keys=keys_dir, algorithms=(Algorithm.ED25519_SHA256,)
    )
    return RuntimeHolder(load_runtime(Config(signing=signing)))


def open_connection(
    holder: RuntimeHolder, loop: asyncio.AbstractEventLoop
) -> tuple[MilterConnection, Transport]:
    """A connection made on *loop*, as the loop makes it; fed by hand, never waiting."""
    transport = Transport()
    connection = MilterConnection(lambda: Session(holder), cast(Executor, None))

    async def made() -> None:
        connection.connection_made(cast(Any, transport))

    loop.run_until_complete(made())
    return connection, transport


def feed(connection: MilterConnection, stream: bytes, cuts: list[int]) -> None:
    """Deliver *stream* as the event loop does: each read fills part of `get_buffer`."""
    offset = 0
    i = 0
    while offset < len(stream) and not connection.closed:
        room = connection.get_buffer(-1)
        count = min(len(room), cuts[i % len(cuts)], len(stream) - offset)
        room[:count] = stream[offset : offset + count]
        offset += count
        i += 1
        connection.buffer_updated(count)


# Packets that are well formed, whatever their order. Hypothesis draws one byte string (a
# "recipe") per example and `Recipe` makes packets of it: far cheaper per example than
# composing strategies, and shrinking still works on the bytes.

COMMANDS = sorted(p.COMMAND_NAMES)
HEADER_NAMES = [b"From", b"To", b"Subject", b"DKIM-Signature", b"X-A", b"from", b"Cc"]
ADDRESSES = [b"<alice@example.com>", b"<>", b"<x@y>", b"alice@example.com"]
FROMS = [b" Alice <alice@example.com>", b" bob@example.net", b" a@example.com, b@example.org"]
FAMILIES = [b"4\x9c\x40192.0.2.7\0", b"6\x00\x19IPv6:2001:db8::7\0", b"U", b"4\0\0127.0.0.1\0"]
NUMBERS = [0x1FF, 0xFFFFFFFF, 0x121, 0, 0x1FFFFF, 0x21]


class Recipe:
    """Well-formed packets made from arbitrary bytes, each choice taken from the next ones."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    @property
    def left(self) -> bool:
        return self.at < len(self.data)

    def byte(self) -> int:
        value = self.data[self.at] if self.at < len(self.data) else 0
        self.at += 1
        return value

    def pick(self, choices: list[Any]) -> Any:
        return choices[self.byte() % len(choices)]

    def text(self, most: int = 40) -> bytes:
        size = self.byte() % (most + 1)
        text = self.data[self.at : self.at + size].replace(b"\0", b".")
        self.at += size
        return text

    def number(self) -> int:
        if self.byte() % 2:
            return int(self.pick(NUMBERS))
        value = int.from_bytes(self.data[self.at : self.at + 4], "big")
        self.at += 4
        return value

    def packet(self, command: int) -> bytes:
        code = bytes([command])
        if command == p.OPTNEG:
            return p.packet(code, struct.pack(">III", 6, self.number(), self.number()))
        if command == p.CONNECT:
            return p.packet(code, self.text() + b"\0" + self.pick(FAMILIES))
        if command in (p.MAIL, p.RCPT):
            first = self.pick(ADDRESSES) if self.byte() % 2 else self.text()
            rest = [self.text(10) for _ in range(self.byte() % 3)]
            return p.packet(code, b"".join(s + b"\0" for s in [first, *rest]))
        if command == p.HEADER:
            name = self.pick(HEADER_NAMES) if self.byte() % 4 else self.text(12) or b"X"
            value = self.pick(FROMS) if self.byte() % 2 else self.text()
            return p.packet(code, name + b"\0" + value + b"\0")
        if command == p.MACRO:
            pairs = [(self.text(12), self.text()) for _ in range(self.byte() % 4)]
            items = b"".join(name + b"\0" + value + b"\0" for name, value in pairs)
            return p.packet(code, bytes([self.pick(list(b"CHMRTNELB"))]) + items)
        if command in (p.BODY, p.HELO, p.UNKNOWN):
            return p.packet(code, self.text(300) + b"\0")
        return p.packet(code)

    def packets(self) -> list[bytes]:
        """Packets of any command but QUIT, in any order, until the recipe is used up."""
        out = []
        while self.left:
            out.append(self.packet(self.pick([c for c in COMMANDS if c != p.QUIT])))
        return out

    def read_sizes(self) -> list[int]:
        """How a stream is cut into reads: a few bytes (up to 1 KiB), or all the room offered."""
        count = 1 + self.byte() % 8
        return [1 << 20 if b >= 128 else 1 + 8 * b for b in [self.byte() for _ in range(count)]]


# One draw per example: each further strategy would cost hypothesis as much again.
recipes = st.binary(max_size=400)
