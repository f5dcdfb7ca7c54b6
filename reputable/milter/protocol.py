"""The milter wire protocol, version 6 (what Postfix and Sendmail speak). Pure: bytes in, bytes out.

A packet is a 4-byte big-endian length, then that many bytes: a one-byte
command and its data. Strings inside are NUL-terminated. This module knows
the packet shapes, the negotiation bits, the limits a peer must keep to, and
which command may follow which (`transitions`, libmilter's `trans_ok` table);
`reputable.milter.connection` drives a session with them.
"""

from __future__ import annotations

import functools
import socket
import struct
from dataclasses import dataclass
from enum import StrEnum

from reputable.errors import ReputableError

VERSION = 6
# The largest packet length: a command byte and 65535 bytes of data. Postfix's body chunks
# (milter8.c MILTER_CHUNK_SIZE) and libmilter's default data limit (MILTER_MAX_DATA_SIZE) are
# 65535 bytes; macros, envelope and connect packets are far smaller.
MAX_PACKET = 64 * 1024
# A header field is the exception: Postfix passes each one whole, up to its header_size_limit
# (default 102400 bytes). Allowed up to [milter] max_header_bytes' default; the session caps
# the whole block.
MAX_HEADER_PACKET = 1024 * 1024
# Macros. Postfix's default lists (milter_*_macros) hold at most 7 names per stage and it knows
# about 30 macros in all, with values of a few dozen bytes (a host name, an address, a login):
# some 2 KiB for a whole connection. Generous headroom, and nothing stored but the bytes received.
MAX_MACRO_NAMES = 64  # per macro packet
MAX_MACRO_BYTES = 32 * 1024  # stored per connection, every stage together
BUFFER = 4 * 1024  # what a connection's reader holds between packets
MIN_READ = 1024

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
R_CHGHEADER = b"m"
R_INSHEADER = b"i"
R_QUARANTINE = b"q"
R_REJECT = b"r"
R_TEMPFAIL = b"t"
R_REPLYCODE = b"y"
R_OPTNEG = b"O"

# Actions the milter may take (SMFIF_*).
ADDHDRS = 0x01
CHGHDRS = 0x10
QUARANTINE = 0x20
SETSYMLIST = 0x100
ACTION_NAMES = {
    ADDHDRS: "add_header",
    CHGHDRS: "change_header",
    QUARANTINE: "quarantine",
    SETSYMLIST: "setsymlist",
}

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
# Every step bit of protocol 6. An MTA may offer others (Sendmail's SMFIP_MDS_256K/1M raise
# the packet size): echoing a bit we do not know would promise what we do not do.
KNOWN_STEPS = 0x1FFFFF

# Stages a macro list can be set for (SMFIM_*), and the command whose macros they are.
STAGE_COMMANDS = {0: CONNECT, 1: HELO, 2: MAIL, 3: RCPT, 4: DATA, 5: BODYEOB, 6: EOH}
# The order of a message's stages; macros of a stage are forgotten when an earlier stage repeats.
STAGE_ORDER = (CONNECT, HELO, MAIL, RCPT, DATA, EOH, BODYEOB)

# The commands by their libmilter names (SMFIC_*), for log lines.
COMMAND_NAMES = {
    ABORT: "abort",
    BODY: "body",
    CONNECT: "connect",
    MACRO: "macro",
    BODYEOB: "bodyeob",
    HELO: "helo",
    QUIT_NC: "quit_nc",
    HEADER: "header",
    MAIL: "mail",
    EOH: "eoh",
    OPTNEG: "optneg",
    QUIT: "quit",
    RCPT: "rcpt",
    DATA: "data",
    UNKNOWN: "unknown",
}

_LENGTH = struct.Struct(">I")
_OPTNEG = struct.Struct(">III")


def command_name(command: int) -> str:
    """A command's libmilter name ("bodyeob"), or its byte ("0x5a") if it is none."""
    return COMMAND_NAMES.get(command) or f"{command:#04x}"


class State(StrEnum):
    """Where a milter connection is: the last protocol step seen (the rows of `transitions`)."""

    INIT = "init"  # nothing yet: option negotiation comes first
    NEGOTIATED = "negotiated"  # options agreed; the MTA's connect comes next
    CONNECTED = "connected"  # an SMTP session, between messages
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    HEADER = "header"
    EOH = "eoh"
    BODY = "body"


MESSAGE_STATES = frozenset(
    {State.MAIL, State.RCPT, State.DATA, State.HEADER, State.EOH, State.BODY}
)


class ProtocolError(ReputableError):
    """The peer sent something that is not the milter protocol; the connection is closed.

    `command` names the offending command where there is one and `state` where the
    connection was, for the log line.
    """

    def __init__(self, detail: str, command: str | None = None, state: State | None = None):
        super().__init__(detail)
        self.command = command
        self.state = state


class OutOfOrder(ProtocolError):
    """A command that may not follow the last one (or no command at all)."""

    def __init__(self, command: int, state: State) -> None:
        name = command_name(command)
        if command not in COMMAND_NAMES:
            detail = f"unknown command {bytes([command])!r}"
        else:
            detail = f"{name} out of order (state {state.value})"
        super().__init__(detail, name, state)


class PacketReader:
    """Splits a byte stream into (command, data) packets, however the reads are cut.

    The socket reads straight into `space()` (asyncio's BufferedProtocol), so a
    read allocates nothing: a plain recv() would allocate 256 KiB per read,
    which glibc maps and unmaps each time. The buffer is only ever replaced,
    never resized, since the event loop may still hold a view of it.

    Memory follows the bytes that arrived, never the length a peer claims: the
    buffer at most quadruples at a time (so reaching n bytes copies fewer than
    n/3) and stays within about four times what it holds. A buffer that grew is
    kept for the packets that follow at once (a body comes in 64 KiB chunks)
    until `settle()` gives it back, which the connection does once it is idle.
    """

    __slots__ = ("_buffer", "_end", "_start", "_view")

    def __init__(self) -> None:
        self._buffer = bytearray(BUFFER)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0

    def space(self) -> memoryview:
        """Where the next read goes: room for more of the packet being read."""
        start, end = self._start, self._end
        if start == end:
            self._start = self._end = 0
            return self._view
        pending = end - start
        size = len(self._buffer)
        needed = MIN_READ
        missing = 0  # of the first packet: 0 or less once it is whole (it waits to be taken)
        if pending >= 4:
            (length,) = _LENGTH.unpack_from(self._buffer, start)
            missing = min(length, MAX_HEADER_PACKET) + 4 - pending
            needed = min(needed, missing) if missing > 0 else needed
        if size - end < needed:
            if size - pending >= max(needed, size // 2):
                self._buffer[:pending] = self._buffer[start:end]  # same size: allowed while viewed
                self._start, self._end = 0, pending
            else:
                # Grow fourfold, or to the rest of the packet if that is not much more: the
                # bytes copied stay linear in those received, the memory within 4 times them.
                growth = missing if 0 < missing <= 4 * size else 3 * size
                self._move(pending + max(needed, growth))
        return self._view[self._end :]

    def wrote(self, count: int) -> None:
        """*count* bytes were read into the last `space()`."""
        self._end += count

    def settle(self) -> None:
        """Give back a buffer that grew, unless it holds much (an idle connection: `BUFFER`)."""
        pending = self._end - self._start
        if len(self._buffer) > BUFFER and 4 * pending <= len(self._buffer):
            self._move(pending + MIN_READ)
        elif not pending:
            self._start = self._end = 0

    def _move(self, room: int) -> None:
        """Into a new buffer of at least *room* bytes (the event loop may hold the old one)."""
        pending = self._end - self._start
        buffer = bytearray(-(-room // BUFFER) * BUFFER)
        buffer[:pending] = self._view[self._start : self._end]
        self._buffer, self._view = buffer, memoryview(buffer)
        self._start, self._end = 0, pending

    @property
    def capacity(self) -> int:
        """The bytes this reader holds in memory."""
        return len(self._buffer)

    def add(self, data: bytes) -> None:
        """Copy bytes in (for callers that do not read into `space()`)."""
        while data:
            room = self.space()
            count = min(len(room), len(data))
            room[:count] = data[:count]
            self.wrote(count)
            data = data[count:]

    def next(self) -> tuple[int, bytes] | None:
        """The next whole packet, or None until more bytes arrive.

        A length over the limit is refused as soon as it (and the command byte) arrived.
        """
        start = self._start
        if self._end - start < 4:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer, start)
        if not 0 < length <= MAX_PACKET:
            self._check_length(length)
        end = start + 4 + length
        if self._end < end:
            return None
        self._start = end
        return self._buffer[start + 4], self._view[start + 5 : end].tobytes()

    def _check_length(self, length: int) -> None:
        """Refuse a length no MTA sends; a header field's may be longer than other packets'."""
        command = self._buffer[self._start + 4] if self._end - self._start > 4 else None
        limit = MAX_PACKET if command not in (HEADER, None) else MAX_HEADER_PACKET
        if 0 < length <= limit:
            return  # a header field, or a length whose command has not arrived yet
        name = command_name(command) if command is not None else None
        raise ProtocolError(f"packet length {length} (allowed 1 to {limit})", name)

    @property
    def pending(self) -> int:
        """Bytes read but not yet returned as a packet."""
        return self._end - self._start


# The transitions of one state: command -> (the state after it, whether it ends the message).
Transitions = dict[State, dict[int, tuple[State, bool]]]
_OPTIONAL = -1
# The steps of a message in their order: the command, the state it leads to, whether it may
# repeat, and the SMFIP_NO* flag with which the milter asks the MTA to leave it out
# (_OPTIONAL: it may be absent anyway: DATA below protocol 4, no header field, no body).
_MESSAGE_STEPS = (
    (MAIL, State.MAIL, False, P_NOMAIL),
    (RCPT, State.RCPT, True, P_NORCPT),
    (DATA, State.DATA, False, _OPTIONAL),
    (HEADER, State.HEADER, True, _OPTIONAL),
    (EOH, State.EOH, False, P_NOEOH),
    (BODY, State.BODY, True, _OPTIONAL),
    (BODYEOB, State.CONNECTED, False, 0),
)


def transitions(steps: int) -> Transitions:
    """Which command may follow which, with the protocol steps negotiated (libmilter's trans_ok).

    A command missing from its state's row is out of order. A step the milter asked the
    MTA to leave out (SMFIP_NO*) may be skipped, and still be sent.
    """
    return _transitions(steps & (P_NOCONNECT | P_NOMAIL | P_NORCPT | P_NOEOH))


@functools.cache
def _transitions(skipped: int) -> Transitions:
    table: Transitions = {state: {MACRO: (state, False), QUIT: (state, False)} for state in State}
    table[State.INIT][OPTNEG] = (State.NEGOTIATED, False)
    for state in State:
        if state is not State.INIT:
            table[state][QUIT_NC] = (State.NEGOTIATED, True)
            after = State.NEGOTIATED if state is State.NEGOTIATED else State.CONNECTED
            table[state][ABORT] = (after, True)  # smtpd(8) sends it after every transaction too
    table[State.NEGOTIATED][CONNECT] = (State.CONNECTED, False)
    between = [State.CONNECTED] + ([State.NEGOTIATED] if skipped & P_NOCONNECT else [])
    for state in [*between, State.MAIL, State.RCPT]:
        table[state][UNKNOWN] = (state, False)
        # A HELO inside a transaction resets it (smtpd(8) reports it, then sends ABORT).
        table[state][HELO] = (State.CONNECTED, state in MESSAGE_STATES)
    optional = [flag == _OPTIONAL or bool(skipped & flag) for *_, flag in _MESSAGE_STEPS]
    origins = [(state, -1) for state in between]
    origins += [(target, i) for i, (_, target, _, _) in enumerate(_MESSAGE_STEPS[:-1])]
    for origin, position in origins:
        for i, (command, target, repeats, _) in enumerate(_MESSAGE_STEPS):
            if (i == position and repeats) or (i > position and all(optional[position + 1 : i])):
                table[origin][command] = (target, command == BODYEOB)
    return table


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


def parse_macros(data: bytes) -> tuple[int, bytes]:
    """(the command the macros belong to, their "name\\0value\\0..." list as received).

    Kept as received, so that storing them costs what they weigh; `macro_value` reads them.
    """
    if not data:
        raise ProtocolError("macro packet without a command", "macro")
    names = (data.count(b"\0", 1) + 1) // 2
    if names > MAX_MACRO_NAMES:
        raise ProtocolError(f"{names} macros in one packet (allowed {MAX_MACRO_NAMES})", "macro")
    return data[0], data[1:]


def macro_value(macros: bytes, names: tuple[bytes, ...]) -> bytes | None:
    """The value of the first of *names* defined in a macro list, as libmilter looks it up."""
    items = strings(macros)
    for i in range(0, len(items) - 1, 2):
        if items[i] in names:
            return items[i + 1]
    return None


def parse_envelope(command: int, data: bytes) -> list[bytes]:
    """MAIL's or RCPT's arguments: the address, then its ESMTP parameters."""
    arguments = strings(data)
    if not arguments:
        name = command_name(command)
        raise ProtocolError(f"{name} without an address", name)
    return arguments


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


def change_header(index: int, name: str, value: str) -> bytes:
    """Replace the index-th (from 1) field of that name; an empty value removes it."""
    return packet(R_CHGHEADER, struct.pack(">I", index) + _cstr(name) + _cstr(value))


def quarantine(reason: str) -> bytes:
    return packet(R_QUARANTINE, _cstr(reason))


def _cstr(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape").replace(b"\0", b" ") + b"\0"
