"""The milter wire protocol, version 6 (what Postfix and Sendmail speak). Pure: bytes in, bytes out.

A packet is a 4-byte big-endian length, then that many bytes: a one-byte
command and its data. Strings inside are NUL-terminated. This module knows
the packet shapes and the negotiation bits; `reputable.milter.connection`
drives a session with them.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

VERSION = 6
# Postfix sends body chunks of at most 64 KiB; anything this large is not a milter peer.
MAX_PACKET = 1 << 20
INITIAL_BUFFER = 16 * 1024  # per connection; grows to hold the largest packet seen (64 KiB body)
MIN_READ = 4 * 1024

# Commands, MTA -> milter.
ABORT = ord("A")
BODY = ord("B")
CONNECT = ord("C")
MACRO = ord("D")
BODYEOB = ord("E")
HELO = ord("H")
QUIT_NC = ord("K")
HEADER = ord("L")
MAIL = ord("M")
EOH = ord("N")
OPTNEG = ord("O")
QUIT = ord("Q")
RCPT = ord("R")
DATA = ord("T")
UNKNOWN = ord("U")

# Replies, milter -> MTA.
R_ACCEPT = b"a"
R_CONTINUE = b"c"
R_DISCARD = b"d"
R_ADDHEADER = b"h"
R_INSHEADER = b"i"
R_QUARANTINE = b"q"
R_REJECT = b"r"
R_TEMPFAIL = b"t"
R_REPLYCODE = b"y"
R_OPTNEG = b"O"

# Actions the milter may take (SMFIF_*).
ADDHDRS = 0x01
QUARANTINE = 0x20
SETSYMLIST = 0x100

# Protocol steps the milter skips (SMFIP_NO*) or does not answer (SMFIP_NR_*).
P_NOCONNECT = 0x01
P_NOHELO = 0x02
P_NOMAIL = 0x04
P_NORCPT = 0x08
P_NOBODY = 0x10
P_NOHDRS = 0x20
P_NOEOH = 0x40
P_NR_HDR = 0x80
P_NOUNKNOWN = 0x100
P_NODATA = 0x200
P_SKIP = 0x400
P_RCPT_REJ = 0x800
P_NR_CONN = 0x1000
P_NR_HELO = 0x2000
P_NR_MAIL = 0x4000
P_NR_RCPT = 0x8000
P_NR_DATA = 0x10000
P_NR_UNKN = 0x20000
P_NR_EOH = 0x40000
P_NR_BODY = 0x80000
P_HDR_LEADSPC = 0x100000

# Stages a macro list can be set for (SMFIM_*), and the command whose macros they are.
STAGE_COMMANDS = {0: CONNECT, 1: HELO, 2: MAIL, 3: RCPT, 4: DATA, 5: BODYEOB, 6: EOH}
# The order of a message's stages; macros of a stage are forgotten when an earlier stage repeats.
STAGE_ORDER = (CONNECT, HELO, MAIL, RCPT, DATA, EOH, BODYEOB)

_LENGTH = struct.Struct(">I")
_OPTNEG = struct.Struct(">III")


class ProtocolError(Exception):
    """The peer sent something that is not the milter protocol; the connection is closed."""


class PacketReader:
    """Splits a byte stream into (command, data) packets, however the reads are cut.

    The socket reads straight into `space()` (asyncio's BufferedProtocol), so a
    read allocates nothing: a plain recv() would allocate 256 KiB per read,
    which glibc maps and unmaps each time. The buffer is only ever replaced,
    never resized, since the event loop may still hold a view of it.
    """

    __slots__ = ("_buffer", "_end", "_start", "_view")

    def __init__(self, size: int = INITIAL_BUFFER) -> None:
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0

    def space(self) -> memoryview:
        """Where the next read goes: room for at least the rest of the packet being read."""
        start, end = self._start, self._end
        if start == end:
            self._start = self._end = start = end = 0
        needed = MIN_READ
        if end - start >= 4:
            (length,) = _LENGTH.unpack_from(self._buffer, start)
            needed = max(needed, min(length, MAX_PACKET) + 4 - (end - start))
        if len(self._buffer) - end < needed:
            kept = end - start
            if len(self._buffer) - kept >= needed:
                self._buffer[:kept] = self._buffer[start:end]  # same size: allowed while viewed
            else:
                size = -(-(kept + needed) // INITIAL_BUFFER) * INITIAL_BUFFER
                bigger = bytearray(size)
                bigger[:kept] = self._buffer[start:end]
                self._buffer, self._view = bigger, memoryview(bigger)
            self._start, self._end = 0, kept
        return self._view[self._end :]

    def wrote(self, count: int) -> None:
        """*count* bytes were read into the last `space()`."""
        self._end += count

    def add(self, data: bytes) -> None:
        """Copy bytes in (for callers that do not read into `space()`)."""
        while data:
            room = self.space()
            count = min(len(room), len(data))
            room[:count] = data[:count]
            self.wrote(count)
            data = data[count:]

    def next(self) -> tuple[int, bytes] | None:
        """The next whole packet, or None until more bytes arrive."""
        start = self._start
        if self._end - start < 4:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer, start)
        if length == 0 or length > MAX_PACKET:
            raise ProtocolError(f"packet length {length} (allowed 1 to {MAX_PACKET})")
        end = start + 4 + length
        if self._end < end:
            return None
        self._start = end
        return self._buffer[start + 4], self._view[start + 5 : end].tobytes()

    @property
    def pending(self) -> int:
        """Bytes read but not yet returned as a packet."""
        return self._end - self._start


def packet(code: bytes, data: bytes = b"") -> bytes:
    return _LENGTH.pack(len(data) + 1) + code + data


def strings(data: bytes) -> list[bytes]:
    """NUL-terminated strings, in order (a missing final NUL is tolerated)."""
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


def parse_optneg(data: bytes) -> tuple[int, int, int]:
    """(version, actions, protocol) offered by the MTA."""
    if len(data) < _OPTNEG.size:
        raise ProtocolError(f"option negotiation of {len(data)} bytes (needs 12)")
    version, actions, protocol = _OPTNEG.unpack_from(data)
    return version, actions, protocol


def optneg_reply(version: int, actions: int, protocol: int, symlists: dict[int, bytes]) -> bytes:
    """Our answer: the version, the actions and protocol steps we use, the macros per stage."""
    lists = b"".join(struct.pack(">I", stage) + names + b"\0" for stage, names in symlists.items())
    return packet(R_OPTNEG, _OPTNEG.pack(version, actions, protocol) + lists)


def parse_macros(data: bytes) -> tuple[int, dict[str, str]]:
    """(the command the macros belong to, name -> value); names lose their braces' absence."""
    if not data:
        raise ProtocolError("macro packet without a command")
    items = strings(data[1:])
    values = {
        items[i].decode("utf-8", "surrogateescape"): items[i + 1].decode("utf-8", "surrogateescape")
        for i in range(0, len(items) - 1, 2)
    }
    return data[0], values


@dataclass(frozen=True, slots=True)
class Connect:
    """The SMTP client as the MTA describes it, in the shapes pymilter's connect callback uses."""

    hostname: str
    family: int
    hostaddr: tuple[str, int] | tuple[str, int, int, int] | str | None


def parse_connect(data: bytes) -> Connect:
    name, nul, rest = data.partition(b"\0")
    if not nul or not rest:
        raise ProtocolError("connect without a host name and family")
    hostname = name.decode("utf-8", "surrogateescape")
    family = chr(rest[0])
    if family == "U":
        return Connect(hostname, socket.AF_UNSPEC, None)
    if len(rest) < 3:
        raise ProtocolError(f"connect for family {family!r} without a port")
    (port,) = struct.unpack_from(">H", rest, 1)
    address = rest[3:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if family == "4":
        return Connect(hostname, socket.AF_INET, (address, port))
    if family == "6":
        address = address.removeprefix("IPv6:").removeprefix("ipv6:")
        return Connect(hostname, socket.AF_INET6, (address, port, 0, 0))
    if family == "L":
        return Connect(hostname, socket.AF_UNIX, address)
    raise ProtocolError(f"connect with unknown family {family!r}")


def parse_header(data: bytes) -> tuple[str, bytes]:
    name, nul, rest = data.partition(b"\0")
    if not nul:
        raise ProtocolError("header without a value")
    value = rest[:-1] if rest.endswith(b"\0") else rest
    return name.decode("ascii", "surrogateescape"), value


def reply_code(rcode: str, xcode: str | None, lines: list[str]) -> bytes:
    """An SMTP reply for REJECT/TEMPFAIL; more than one line is sent as a multi-line reply."""
    clean = [" ".join(line.split("\r\n")).replace("\n", " ").replace("\r", " ") for line in lines]
    clean = clean or [""]
    prefix = f"{rcode} {xcode} " if xcode else f"{rcode} "
    if len(clean) == 1:
        text = prefix + clean[0]
    else:
        dash = f"{rcode}-{xcode} " if xcode else f"{rcode}-"
        text = "\r\n".join([dash + line for line in clean[:-1]] + [prefix + clean[-1]])
    return packet(R_REPLYCODE, text.encode("utf-8", "surrogateescape") + b"\0")


def add_header(name: str, value: str) -> bytes:
    return packet(R_ADDHEADER, _cstr(name) + _cstr(value))


def insert_header(index: int, name: str, value: str) -> bytes:
    return packet(R_INSHEADER, struct.pack(">I", index) + _cstr(name) + _cstr(value))


def quarantine(reason: str) -> bytes:
    return packet(R_QUARANTINE, _cstr(reason))


def _cstr(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape").replace(b"\0", b" ") + b"\0"
