"""A direct milter-protocol load driver: the milter's own ceiling, without an MTA in the way.

It speaks the milter protocol (version 6, as Postfix does) over a unix or TCP
socket: OPTNEG, then per message the macros and CONNECT, HELO, MAIL, RCPT,
DATA, each HEADER, EOH, BODY in chunks of at most 64 KiB and EOM, reading
every reply the milter did not opt out of (its ``SMFIP_NR_*`` flags) and
collecting what it answers at EOM (added and inserted header fields,
quarantine, the final action).  It works against any milter: reputable,
OpenDKIM, dkimpy-milter.

``N`` connections run concurrently (asyncio, one thread), each sending ``M``
messages, ``--per-session`` of them over one milter connection (default 1:
one SMTP session per message, like ``smtp-source`` without ``-d``).  Macros
are sent as Postfix 3.7's milter8.c sends them: before every event, skipped
ones included, the milter's requested list for the stage (``setsymlist``) or
Postfix's default list, only those with a value; the end-of-header list goes
before every header too, and the end-of-data list before every body chunk.

Usage::

    python -m benchmarks.milter_driver unix:/tmp/x/milter.sock --connections 20 --messages 100
    python -m benchmarks.milter_driver inet:8891@127.0.0.1 --size 102400 --json

It prints msgs/s, per-message latency (from the first packet of the message
to the milter's final EOM reply) and the EOM latency (EOM sent to the final
reply), and how many messages got a DKIM-Signature.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import statistics
import struct
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from reputable.milter.protocol import STAGE_COMMANDS

# Commands (MTA -> milter).
SMFIC_ABORT = b"A"
SMFIC_BODY = b"B"
SMFIC_CONNECT = b"C"
SMFIC_MACRO = b"D"
SMFIC_BODYEOB = b"E"
SMFIC_HELO = b"H"
SMFIC_HEADER = b"L"
SMFIC_MAIL = b"M"
SMFIC_EOH = b"N"
SMFIC_OPTNEG = b"O"
SMFIC_QUIT = b"Q"
SMFIC_RCPT = b"R"
SMFIC_DATA = b"T"

# Replies (milter -> MTA).
SMFIR_ADDRCPT = b"+"
SMFIR_DELRCPT = b"-"
SMFIR_ACCEPT = b"a"
SMFIR_REPLBODY = b"b"
SMFIR_CONTINUE = b"c"
SMFIR_DISCARD = b"d"
SMFIR_CHGFROM = b"e"
SMFIR_ADDHEADER = b"h"
SMFIR_INSHEADER = b"i"
SMFIR_CHGHEADER = b"m"
SMFIR_PROGRESS = b"p"
SMFIR_QUARANTINE = b"q"
SMFIR_REJECT = b"r"
SMFIR_SKIP = b"s"
SMFIR_TEMPFAIL = b"t"
SMFIR_REPLYCODE = b"y"
FINAL_REPLIES = {
    SMFIR_ACCEPT,
    SMFIR_CONTINUE,
    SMFIR_DISCARD,
    SMFIR_REJECT,
    SMFIR_TEMPFAIL,
    SMFIR_REPLYCODE,
}
ACTION_NAMES = {
    SMFIR_ACCEPT: "accept",
    SMFIR_CONTINUE: "continue",
    SMFIR_DISCARD: "discard",
    SMFIR_REJECT: "reject",
    SMFIR_TEMPFAIL: "tempfail",
    SMFIR_REPLYCODE: "replycode",
    SMFIR_SKIP: "skip",
}

# Protocol flags (SMFIP_*), offered by the MTA, chosen by the milter.
SMFIP_NOCONNECT = 0x1
SMFIP_NOHELO = 0x2
SMFIP_NOMAIL = 0x4
SMFIP_NORCPT = 0x8
SMFIP_NOBODY = 0x10
SMFIP_NOHDRS = 0x20
SMFIP_NOEOH = 0x40
SMFIP_NR_HDR = 0x80
SMFIP_NOUNKNOWN = 0x100
SMFIP_NODATA = 0x200
SMFIP_SKIP = 0x400
SMFIP_RCPT_REJ = 0x800
SMFIP_NR_CONN = 0x1000
SMFIP_NR_HELO = 0x2000
SMFIP_NR_MAIL = 0x4000
SMFIP_NR_RCPT = 0x8000
SMFIP_NR_DATA = 0x10000
SMFIP_NR_UNKN = 0x20000
SMFIP_NR_EOH = 0x40000
SMFIP_NR_BODY = 0x80000
SMFIP_HDR_LEADSPC = 0x100000
PROTOCOL_OFFERED = 0x1FFFFF  # every step may be skipped or left unanswered, leading spaces kept
ACTIONS_OFFERED = 0x1FF  # every modification, SETSYMLIST included
MILTER_VERSION = 6
BODY_CHUNK = 65535  # MILTER_CHUNK_SIZE

# Postfix's defaults (milter_*_macros), used for a stage the milter asked nothing about.
POSTFIX_MACROS = {
    SMFIC_CONNECT: ("j", "{daemon_name}", "{daemon_addr}", "v", "_", "{client_addr}"),
    SMFIC_HELO: ("{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"),
    SMFIC_MAIL: ("i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}"),
    SMFIC_RCPT: ("{rcpt_addr}",),
    SMFIC_DATA: ("i",),
    SMFIC_EOH: ("i",),
    SMFIC_BODYEOB: ("i",),
}
DEFAULT_MESSAGE_SIZE = 2048


class MilterProtocolError(RuntimeError):
    """The milter answered something the protocol does not allow here."""


@dataclass(frozen=True)
class TestMessage:
    """A message split the way an MTA hands it to a milter."""

    headers: tuple[tuple[str, str], ...]
    """(name, value) with the value as it follows the colon (leading space included)."""
    body: bytes
    """CRLF line ends, not dot-stuffed."""
    raw: bytes
    """The whole message (CRLF), as a receiver sees it."""


def parse_message(raw: bytes) -> TestMessage:
    """Split a CRLF (or LF) message into header fields and body; folded fields are kept whole."""
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    end = data.find(b"\r\n\r\n")
    head, body = (data[:end], data[end + 4 :]) if end >= 0 else (data, b"")
    fields: list[list[str]] = []
    for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += "\n" + line  # Postfix hands folded values to milters with LF
        else:
            name, _, value = line.partition(":")
            fields.append([name, value])
    return TestMessage(tuple((n, v) for n, v in fields), body, data)


def make_message(
    size: int, domain: str = "bench.example.com", rcpt: str = "bob@sink.test"
) -> bytes:
    """A plain-text message of about *size* bytes on the wire (CRLF), from alice@*domain*.

    The body is deterministic pseudo-text in 78-character lines; every 97th
    line starts with a dot, so that dot-stuffing is exercised on the way.
    """
    header = (
        f"From: Alice Example <alice@{domain}>\r\n"
        f"To: Bob <{rcpt}>\r\n"
        f"Subject: benchmark message of {size} bytes\r\n"
        "Date: Fri, 27 Nov 2026 06:00:00 +0000\r\n"
        f"Message-ID: <bench-{size}@{domain}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode("ascii")
    rng = random.Random(size)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(512)
    ]
    lines: list[bytes] = []
    total = len(header)
    n = 0
    # Distinct lines for the first 256 KiB; a larger message repeats that block.
    while total < min(size, 256 * 1024):
        n += 1
        parts: list[str] = ["." if n % 97 == 0 else ""]
        length = len(parts[0])
        while length < 70:
            word = rng.choice(words)
            parts.append(word)
            length += len(word) + 1
        line = " ".join(parts).strip()[:78].encode("ascii") + b"\r\n"
        lines.append(line)
        total += len(line)
    block = b"".join(lines)
    body = block
    if total < size:
        body = block * ((size - len(header)) // len(block) + 1)
        body = body[: body.rfind(b"\r\n", 0, size - len(header)) + 2]
    return header + body


@dataclass
class DriverConfig:
    socket: str
    """``unix:/path`` (or ``local:``), ``inet:PORT@HOST``, or ``HOST:PORT``."""
    connections: int = 20
    messages: int = 100
    """Messages per connection (ignored once *duration_s* is over)."""
    per_session: int = 1
    message: bytes = b""
    mail_from: str = "alice@bench.example.com"
    rcpt: str = "bob@sink.test"
    client_addr: str = "127.0.0.1"
    client_name: str = "localhost"
    helo: str = "client.bench.test"
    timeout_s: float = 60.0
    duration_s: float | None = None
    """Stop starting messages after this long (for profiling runs)."""
    keep_samples: int = 5
    """How many (message, added header fields) to keep, for verifying the signatures."""
    nodelay: bool = True


@dataclass
class Sample:
    message: bytes
    added: list[tuple[str, str]]
    leading_space: bool

    def signed_message(self) -> bytes:
        """The message as the MTA would pass it on: the added fields on top (CRLF folded)."""
        fields = b""
        for name, value in self.added:
            text = value if self.leading_space else " " + value
            fields += (
                f"{name}:{text}".replace("\r\n", "\n").replace("\n", "\r\n").encode() + b"\r\n"
            )
        return fields + self.message


@dataclass
class DriverResult:
    messages: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    eom_latencies_s: list[float] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    signed: int = 0
    errors: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    negotiated: dict[str, int] = field(default_factory=dict)

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "msgs_per_s": round(self.msgs_per_s, 1),
            "latency_ms": percentiles_ms(self.latencies_s),
            "eom_latency_ms": percentiles_ms(self.eom_latencies_s),
            "actions": dict(self.actions),
            "signed": self.signed,
            "errors": self.errors[:10],
            "error_count": len(self.errors),
            "negotiated": self.negotiated,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentiles_ms(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    return {
        "p50": round(percentile(values, 50) * 1000, 3),
        "p90": round(percentile(values, 90) * 1000, 3),
        "p99": round(percentile(values, 99) * 1000, 3),
        "max": round(max(values) * 1000, 3),
        "mean": round(statistics.fmean(values) * 1000, 3),
    }


def _packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + command + data


def _cstrings(*values: str) -> bytes:
    return b"".join(v.encode("utf-8", "surrogateescape") + b"\0" for v in values)


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kind, _, rest = address.partition(":")
    if kind in ("unix", "local"):
        return await asyncio.open_unix_connection(rest)
    if kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        return await asyncio.open_connection(host or "127.0.0.1", int(port))
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port))


class Session:
    """One milter connection."""

    def __init__(self, config: DriverConfig, parsed: TestMessage, result: DriverResult) -> None:
        self.config = config
        self.parsed = parsed
        self.result = result
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.protocol = 0
        self.actions = 0
        self.symlists: dict[bytes, tuple[str, ...]] = {}
        self.connected = False

    async def open(self) -> None:
        self.reader, self.writer = await _open(self.config.socket)
        sock = self.writer.get_extra_info("socket")
        if self.config.nodelay and sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer.write(
            _packet(
                SMFIC_OPTNEG,
                struct.pack("!III", MILTER_VERSION, ACTIONS_OFFERED, PROTOCOL_OFFERED),
            )
        )
        command, data = await self.read()
        if command != SMFIC_OPTNEG or len(data) < 12:
            raise MilterProtocolError(f"expected an OPTNEG reply, got {command!r}")
        _version, self.actions, self.protocol = struct.unpack("!III", data[:12])
        rest = data[12:]
        while len(rest) >= 4:
            (stage,) = struct.unpack("!I", rest[:4])
            end = rest.find(b"\0", 4)
            names = rest[4 : end if end >= 0 else len(rest)].decode()
            rest = rest[end + 1 :] if end >= 0 else b""
            if stage in STAGE_COMMANDS:  # macro stages (SMFIM_*) and their commands
                self.symlists[bytes([STAGE_COMMANDS[stage]])] = tuple(names.split())
        self.result.negotiated = {"actions": self.actions, "protocol": self.protocol}

    async def read(self) -> tuple[bytes, bytes]:
        assert self.reader is not None
        header = await self.reader.readexactly(4)
        (length,) = struct.unpack("!I", header)
        payload = await self.reader.readexactly(length)
        return payload[:1], payload[1:]

    def macros(self, command: bytes, values: dict[str, str], event: bytes = b"") -> bytes:
        """The macro packet for *command*'s stage, sent ahead of *event* (default: itself).

        Postfix sends the end-of-header macros before every header too, and the
        end-of-data macros before every body chunk, each tagged with that event.
        """
        names = self.symlists.get(command, POSTFIX_MACROS.get(command, ()))
        pairs = [(n, values[n]) for n in names if values.get(n)]
        if not pairs:
            return b""
        flat = [s for pair in pairs for s in pair]
        return _packet(SMFIC_MACRO, (event or command) + _cstrings(*flat))

    async def step(self, packet: bytes, skip_flag: int, noreply_flag: int) -> bytes | None:
        """Send one step (unless skipped); return its reply, or None when none is expected."""
        assert self.writer is not None
        if self.protocol & skip_flag:
            return None
        self.writer.write(packet)
        if self.protocol & noreply_flag:
            return None
        await self.writer.drain()
        while True:
            command, _ = await self.read()
            if command != SMFIR_PROGRESS:
                return command

    async def message(self, started: float) -> tuple[str, list[tuple[str, str]] | None]:
        """One transaction: the final action and the fields added at EOM (None: ended early)."""
        assert self.writer is not None
        queue_id = f"{random.getrandbits(40):010X}"
        values = {
            "j": "mta.example.com",
            "{daemon_name}": "mta.example.com",
            "{daemon_addr}": "127.0.0.1",
            "v": "Postfix 3.7",
            "_": f"{self.config.client_name} [{self.config.client_addr}]",
            "{client_addr}": self.config.client_addr,
            "{client_name}": self.config.client_name,
            "{client_port}": "40000",
            "i": queue_id,
            "{mail_addr}": self.config.mail_from,
            "{rcpt_addr}": self.config.rcpt,
        }
        ended = ""
        if not self.connected:
            self.connected = True
            family = b"6" if ":" in self.config.client_addr else b"4"
            connect = (
                _cstrings(self.config.client_name)
                + family
                + struct.pack("!H", 40000)
                + _cstrings(self.config.client_addr)
            )
            self.writer.write(self.macros(SMFIC_CONNECT, values))
            reply = await self.step(_packet(SMFIC_CONNECT, connect), SMFIP_NOCONNECT, SMFIP_NR_CONN)
            ended = _ends(reply)
            if not ended:
                self.writer.write(self.macros(SMFIC_HELO, values))
                reply = await self.step(
                    _packet(SMFIC_HELO, _cstrings(self.config.helo)), SMFIP_NOHELO, SMFIP_NR_HELO
                )
                ended = _ends(reply)
        if ended:
            return ended, None
        steps: list[tuple[bytes, bytes, int, int]] = [
            (
                SMFIC_MAIL,
                _packet(SMFIC_MAIL, _cstrings(f"<{self.config.mail_from}>")),
                SMFIP_NOMAIL,
                SMFIP_NR_MAIL,
            ),
            (
                SMFIC_RCPT,
                _packet(SMFIC_RCPT, _cstrings(f"<{self.config.rcpt}>")),
                SMFIP_NORCPT,
                SMFIP_NR_RCPT,
            ),
            (SMFIC_DATA, _packet(SMFIC_DATA), SMFIP_NODATA, SMFIP_NR_DATA),
        ]
        for command, packet, skip, noreply in steps:
            self.writer.write(self.macros(command, values))  # Postfix sends them even if skipped
            ended = _ends(await self.step(packet, skip, noreply))
            if ended:
                return ended, None
        leading = bool(self.protocol & SMFIP_HDR_LEADSPC)
        for name, value in self.parsed.headers:
            text = value if leading else value.removeprefix(" ")
            self.writer.write(self.macros(SMFIC_EOH, values, SMFIC_HEADER))
            ended = _ends(
                await self.step(
                    _packet(SMFIC_HEADER, _cstrings(name, text)), SMFIP_NOHDRS, SMFIP_NR_HDR
                )
            )
            if ended:
                return ended, None
        self.writer.write(self.macros(SMFIC_EOH, values))
        ended = _ends(await self.step(_packet(SMFIC_EOH), SMFIP_NOEOH, SMFIP_NR_EOH))
        if ended:
            return ended, None
        body = self.parsed.body
        for offset in range(0, len(body), BODY_CHUNK):
            self.writer.write(self.macros(SMFIC_BODYEOB, values, SMFIC_BODY))
            reply = await self.step(
                _packet(SMFIC_BODY, body[offset : offset + BODY_CHUNK]),
                SMFIP_NOBODY,
                SMFIP_NR_BODY,
            )
            if reply == SMFIR_SKIP:
                break
            ended = _ends(reply)
            if ended:
                return ended, None
        self.writer.write(self.macros(SMFIC_BODYEOB, values))
        eom_sent = time.perf_counter()
        self.writer.write(_packet(SMFIC_BODYEOB))
        await self.writer.drain()
        added: list[tuple[str, str]] = []
        while True:
            command, data = await self.read()
            if command in (SMFIR_ADDHEADER, SMFIR_INSHEADER):
                packed = data[4:] if command == SMFIR_INSHEADER else data
                raw_name, raw_value, _ = packed.split(b"\0", 2)
                added.append((raw_name.decode(), raw_value.decode("utf-8", "surrogateescape")))
            elif command in FINAL_REPLIES:
                done = time.perf_counter()
                self.result.eom_latencies_s.append(done - eom_sent)
                self.result.latencies_s.append(done - started)
                return ACTION_NAMES.get(command, command.decode()), added
            elif command not in (
                SMFIR_PROGRESS,
                SMFIR_CHGHEADER,
                SMFIR_QUARANTINE,
                SMFIR_ADDRCPT,
                SMFIR_DELRCPT,
                SMFIR_CHGFROM,
                SMFIR_REPLBODY,
            ):
                raise MilterProtocolError(f"unexpected reply {command!r} at EOM")

    async def close(self) -> None:
        if self.writer is None:
            return
        with contextlib.suppress(OSError, ConnectionError):
            self.writer.write(_packet(SMFIC_QUIT))
            await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()
        self.writer = None


def _ends(reply: bytes | None) -> str:
    """The action name when *reply* ends the transaction early, else ""."""
    if reply is None or reply == SMFIR_CONTINUE:
        return ""
    return ACTION_NAMES.get(reply, reply.decode("ascii", "replace"))


async def _worker(
    config: DriverConfig, parsed: TestMessage, result: DriverResult, deadline: float | None
) -> None:
    sent = 0
    while sent < config.messages:
        session = Session(config, parsed, result)
        try:
            await asyncio.wait_for(session.open(), config.timeout_s)
            for _ in range(config.per_session):
                if sent >= config.messages or (
                    deadline is not None and time.monotonic() >= deadline
                ):
                    break
                started = time.perf_counter()
                action, added = await asyncio.wait_for(session.message(started), config.timeout_s)
                sent += 1
                result.messages += 1
                result.actions[action] += 1
                if added is None:
                    break  # the transaction ended before EOM: a new connection for the next
                if any(name.lower() == "dkim-signature" for name, _ in added):
                    result.signed += 1
                    if len(result.samples) < config.keep_samples:
                        leading = bool(session.protocol & SMFIP_HDR_LEADSPC)
                        result.samples.append(Sample(parsed.raw, added, leading))
        except (OSError, asyncio.IncompleteReadError, TimeoutError, MilterProtocolError) as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
            sent += 1
        finally:
            await session.close()
        if deadline is not None and time.monotonic() >= deadline:
            return


async def drive(config: DriverConfig) -> DriverResult:
    """Run the load; every connection sends its messages, concurrently."""
    message = config.message or make_message(DEFAULT_MESSAGE_SIZE)
    parsed = parse_message(message)
    result = DriverResult()
    deadline = time.monotonic() + config.duration_s if config.duration_s else None
    started = time.perf_counter()
    await asyncio.gather(
        *(_worker(config, parsed, result, deadline) for _ in range(config.connections))
    )
    result.seconds = time.perf_counter() - started
    return result


def run(config: DriverConfig) -> DriverResult:
    return asyncio.run(drive(config))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.milter_driver",
        description="Drive a milter directly over the milter protocol and report msgs/s.",
    )
    parser.add_argument("socket", help="unix:/path, inet:PORT@HOST or HOST:PORT")
    parser.add_argument("--connections", "-n", type=int, default=20)
    parser.add_argument("--messages", "-m", type=int, default=100, help="per connection")
    parser.add_argument("--per-session", type=int, default=1, help="messages per connection")
    parser.add_argument("--size", type=int, default=DEFAULT_MESSAGE_SIZE, help="message bytes")
    parser.add_argument("--message-file", help="send this message (CRLF or LF) instead")
    parser.add_argument("--from", dest="mail_from", default="alice@bench.example.com")
    parser.add_argument("--client-addr", default="127.0.0.1")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--nagle", action="store_true", help="leave Nagle on (TCP_NODELAY off)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.message_file:
        with open(args.message_file, "rb") as f:
            message = f.read()
    else:
        domain = args.mail_from.rpartition("@")[2]
        message = make_message(args.size, domain)
    config = DriverConfig(
        socket=args.socket,
        connections=args.connections,
        messages=args.messages,
        per_session=args.per_session,
        message=message,
        mail_from=args.mail_from,
        client_addr=args.client_addr,
        duration_s=args.duration,
        nodelay=not args.nagle,
    )
    result = run(config)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        lat = result.summary()["latency_ms"]
        print(
            f"{result.messages} messages in {result.seconds:.2f} s: {result.msgs_per_s:.1f} msgs/s; "
            f"latency ms {lat}; signed {result.signed}; actions {dict(result.actions)}; "
            f"errors {len(result.errors)}"
        )
        for error in result.errors[:5]:
            print(f"  error: {error}", file=sys.stderr)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
