"""The protocol engine against a peer that breaks the rules, in-process over real sockets.

Each test takes one rule against hostile peers (limits, backpressure, the state table,
negotiation, macros forgotten at the end of a message) and checks it where
the connection keeps its state; `tests/hostile/` does the same against a
real `reputable milter` process, from the outside.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import Milter
import pytest

from reputable.log import record_fields
from reputable.milter import protocol as p
from reputable.milter import session as session_module
from reputable.milter.connection import SHRINK_AFTER_S, MilterConnection
from reputable.milter.server import Listener
from reputable.reputation import MessageFacts, WouldBlock
from reputable.runtime import RuntimeHolder
from tests.unit.milter.test_connection import (
    Mta,
    body_and_end,
    connect,
    end_of_headers,
    engine,
    headers,
    macros,
    mail,
    run,
    signed,
    until,
)
from tests.unit.milter.test_session import HEADERS, runtime_for, verifies


@pytest.fixture
def holder(keys_dir: Path) -> RuntimeHolder:
    return RuntimeHolder(runtime_for(keys_dir))


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [record_fields(r) for r in caplog.records if "event" in record_fields(r)]


def the_connection(listener: Listener) -> MilterConnection:
    (connection,) = listener.connections
    return connection


async def closed_without_reply(mta: Mta) -> None:
    assert await mta.reader.read() == b""  # nothing answered: Postfix applies its default action


# P1: lengths and buffers


def test_an_idle_connection_holds_a_few_kib_whatever_it_claimed_or_sent(
    holder: RuntimeHolder,
) -> None:
    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            connection = the_connection(listener)
            # A whole body chunk's worth of macros the milter does not keep, then idle.
            negotiated = connection.last_active
            mta.send([macros(b"B", i="x" * (p.MAX_PACKET - 10))])
            await until(lambda: connection.last_active > negotiated)
            assert connection.reader.capacity == p.BUFFER  # given back after the large packet
            # A 64 KiB packet claimed, 10 bytes of it sent: nothing committed for the rest.
            mta.send([struct.pack(">I", p.MAX_PACKET) + b"D" + b"B" * 10])
            await until(lambda: connection.reader.pending == 15)
            assert connection.reader.capacity == p.BUFFER
            await mta.close()

    run(scenario())


async def a_body_chunk(listener: Listener, mta: Mta) -> MilterConnection:
    """A message up to its first body chunk, 64 KiB: read into a buffer that grew for it."""
    await mta.negotiate()
    await mta.through_headers()
    connection = the_connection(listener)
    mta.send([p.packet(b"B", b"z" * (p.MAX_PACKET - 1))])
    await until(lambda: connection.reader.pending == 0 and connection.reader.capacity > p.BUFFER)
    return connection


def test_a_buffer_grown_for_a_body_chunk_is_kept_a_while_for_the_next(
    holder: RuntimeHolder,
) -> None:
    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            connection = await a_body_chunk(listener, mta)
            assert connection.shrinking is not None
            await asyncio.sleep(SHRINK_AFTER_S + 0.2)
            assert connection.reader.capacity == p.BUFFER and connection.shrinking is None
            await mta.close()

    run(scenario())


def test_a_closed_connection_leaves_no_timer_holding_its_buffer(holder: RuntimeHolder) -> None:
    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            connection = await a_body_chunk(listener, mta)
            await mta.close()
            await until(lambda: not listener.connections)
            assert connection.shrinking is None

    run(scenario())


def test_the_idle_deadline_counts_from_the_last_whole_packet(holder: RuntimeHolder) -> None:
    """A peer trickling the bytes of one packet does not reset the idle timer."""

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            connection = the_connection(listener)
            negotiated = connection.last_active
            packet = connect()
            for i in range(len(packet) - 1):
                mta.send([packet[i : i + 1]])
                await mta.writer.drain()
                await asyncio.sleep(0.002)
            assert connection.last_active == negotiated
            mta.send([packet[-1:]])
            await until(lambda: connection.last_active > negotiated)
            await mta.close()

    run(scenario())


# P2: backpressure


class StuckReputation:
    """A gate whose lookups miss the cache, then wait on the worker until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.waiting = threading.Event()

    def facts(self, *args: Any) -> MessageFacts:
        if threading.current_thread() is threading.main_thread():
            raise WouldBlock("not cached")
        self.waiting.set()
        self.release.wait(20)
        return MessageFacts((), "pass", True)

    def stop(self) -> None:
        self.release.set()


def test_a_connection_is_not_read_while_its_lookup_is_pending(holder: RuntimeHolder) -> None:
    """Body chunks streamed without waiting stay in the peer's socket, then all are signed."""
    stuck = StuckReputation()

    holder.reputation = stuck  # type: ignore[assignment]
    chunk = b"y" * 1000 + b"\r\n"
    body = chunk * 64 * 128  # 8 MB, 128 chunks of 64 KB

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            mta.send([connect(), *mail(), p.packet(b"T")])
            assert await mta.until_final() == [(b"c", b"")]
            mta.send([*headers(), *end_of_headers()])
            await until(stuck.waiting.is_set)
            connection = the_connection(listener)
            sent = 0
            for offset in range(0, len(body), len(chunk) * 64):
                mta.send([p.packet(b"B", body[offset : offset + len(chunk) * 64])])
                sent += len(chunk) * 64
                try:
                    await asyncio.wait_for(mta.writer.drain(), 0.3)
                except TimeoutError:
                    break  # the peer's socket is full: reading has stopped
            assert not connection.reading
            assert connection.reader.pending < 256 * 1024  # what was read before the pause
            assert sent < len(body)  # the rest could not even be sent
            stuck.release.set()
            assert await mta.until_final() == [(b"c", b"")]  # end of headers, answered now
            await asyncio.sleep(0)
            rest = range(sent, len(body), 65000)
            mta.send([p.packet(b"B", body[offset : offset + 65000]) for offset in rest])
            mta.send([macros(b"E", i="4Xy1"), p.packet(b"E")])
            replies = await mta.until_final()
            assert [c for c, _ in replies] == [b"i", b"i", b"a"]
            assert connection.reading
            assert verifies(signed(replies, body=body), 0, holder.current)
            await mta.close()

    try:
        run(scenario(), timeout_s=60)
    finally:
        stuck.release.set()
        holder.reputation = None


def test_a_peer_that_does_not_read_our_replies_is_not_read_either(
    holder: RuntimeHolder, tmp_path: Path
) -> None:
    cycles = 40_000  # MAIL, DATA (answered), ABORT: 40,000 replies, 200 KB

    async def scenario() -> None:
        # A unix socket: what is in flight counts against the sender's buffer, set small here.
        async with engine(holder, tmp_path / "m.sock") as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            connection = the_connection(listener)
            assert connection.transport is not None
            sock = connection.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            mta.writer.transport.set_write_buffer_limits(high=1 << 30)
            mta.writer.transport.pause_reading()  # type: ignore[attr-defined]
            cycle = b"".join([*mail(), p.packet(b"T"), p.packet(b"A")])
            mta.send([connect(), cycle * cycles])
            await until(lambda: not connection.reading)
            await asyncio.sleep(0.2)
            assert not connection.reading
            assert connection.transport.get_write_buffer_size() < 256 * 1024
            mta.writer.transport.resume_reading()  # type: ignore[attr-defined]
            replies = [await mta.read() for _ in range(cycles)]
            assert set(replies) == {(b"c", b"")}
            assert connection.reading
            await mta.close()

    run(scenario(), timeout_s=60)


# P3: macros


def test_a_macro_packet_with_too_many_names_closes_the_connection(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "reputable")
    names = {f"m{i}": "v" for i in range(p.MAX_MACRO_NAMES + 1)}

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            mta.send([connect(), macros(b"M", **names)])
            await closed_without_reply(mta)
            await mta.close()

    run(scenario())
    (line,) = events(caplog)
    assert (line["event"], line["command"]) == ("protocol_error", "macro")
    assert "65 macros in one packet" in str(line["detail"])


def test_macros_are_kept_as_received_up_to_max_macro_bytes_per_connection(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "reputable")
    value = "v" * 8000

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            connection = the_connection(listener)
            stages = [macros(stage, a=value) for stage in (b"C", b"H", b"M")]
            mta.send([*stages, macros(b"M", a=value)])  # replaces MAIL's: still 3 stages
            await mta.writer.drain()
            await until(lambda: connection.reader.pending == 0 and connection.ctx.macro_bytes > 0)
            assert connection.ctx.macro_bytes == 3 * len(b"a\0" + value.encode() + b"\0")
            assert connection.ctx.macros[p.MAIL] == b"a\0" + value.encode() + b"\0"
            mta.send([macros(b"R", a=value), macros(b"T", a=value)])  # 40 KB: over 32 KiB
            await closed_without_reply(mta)
            await mta.close()

    run(scenario())
    (line,) = events(caplog)
    assert (line["event"], line["command"]) == ("protocol_error", "macro")
    assert f"allowed {p.MAX_MACRO_BYTES} per connection" in str(line["detail"])


# P7: a message's macros end with it


def ending_at_eoh(code: int) -> Callable[[session_module.Session], int]:
    """An end of headers that decides the message with *code* (as the gate would)."""

    def eoh(session: session_module.Session) -> int:
        session.message = None
        if code in (Milter.REJECT, Milter.TEMPFAIL):
            session.setreply("550" if code == Milter.REJECT else "451", None, "decided")
        return code

    return eoh


# How the first message ends: the packets after its MAIL (answered once), or (headers sent,
# the answer its end of headers gives instead of the session's).
ENDINGS: dict[str, list[bytes] | tuple[list[tuple[str, bytes]], int | None]] = {
    "signed at eom": (HEADERS, None),
    "accepted at eoh": ([("From", b" someone@example.net")], None),  # not a domain of ours
    "rejected at eoh": (HEADERS, Milter.REJECT),
    "tempfailed at eoh": (HEADERS, Milter.TEMPFAIL),
    "discarded at eoh": (HEADERS, Milter.DISCARD),
    "aborted": [p.packet(b"T"), *headers(), p.packet(b"A")],
    "helo in the transaction": [p.packet(b"H", b"client.example\0")],
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_message_takes_its_macros_with_it_however_it_ended(
    holder: RuntimeHolder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    """An authenticated message, then one without a login: the second is not authenticated."""
    caplog.set_level(logging.INFO, "reputable")
    holder.replace(runtime_for(holder.current.config.signing.keys, internal_hosts=()))
    how = ENDINGS[ending]

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            mta.send([connect("198.51.100.7"), *mail(auth="alice")])
            if isinstance(how, list):
                mta.send(how)
                if how[0][4:5] != b"H":  # HELO is not answered (SMFIP_NR_HELO)
                    assert await mta.until_final() == [(b"c", b"")]
            else:
                fields, code = how
                if code is not None:
                    monkeypatch.setattr(session_module.Session, "eoh", ending_at_eoh(code))
                mta.send([p.packet(b"T")])
                assert await mta.until_final() == [(b"c", b"")]
                mta.send([*headers(fields, "Q1"), *end_of_headers("Q1")])
                if await mta.until_final() == [(b"c", b"")]:
                    mta.send(body_and_end(queue_id="Q1"))
                    assert [c for c, _ in await mta.until_final()] == [b"i", b"i", b"a"]
                monkeypatch.undo()
            mta.send([p.packet(b"M", b"<bob@example.com>\0"), p.packet(b"T")])  # no macros
            assert await mta.until_final() == [(b"c", b"")]
            mta.send([*headers(queue_id="Q2"), *end_of_headers("Q2")])
            assert await mta.until_final() == [(b"a", b"")]  # from outside: not signed
            await mta.close()

    run(scenario())
    lines = [record_fields(r) for r in caplog.records if "action" in record_fields(r)]
    assert (lines[-1]["queue_id"], lines[-1]["source"]) == ("Q2", "external")


# P8, P9: commands the state table refuses


OUT_OF_ORDER = {
    "end of message before MAIL": ([connect(), p.packet(b"E")], "bodyeob", "connected"),
    "end of headers before MAIL": ([connect(), p.packet(b"N")], "eoh", "connected"),
    "header before MAIL": ([connect(), p.packet(b"L", b"From\0 a@b\0")], "header", "connected"),
    "body before MAIL": ([connect(), p.packet(b"B", b"x")], "body", "connected"),
    "MAIL twice": ([connect(), *mail(), *mail()], "mail", "mail"),
    "header after the body": (
        [connect(), *mail(), *headers(), *end_of_headers(), p.packet(b"B", b"x"), *headers()],
        "header",
        "body",
    ),
    "CONNECT twice": ([connect(), connect()], "connect", "connected"),
    "negotiation twice": (
        [p.packet(b"O", struct.pack(">III", 6, 0x1FF, 0))],
        "optneg",
        "negotiated",
    ),
    "an unknown command": ([connect(), p.packet(b"Z", b"what")], "0x5a", "connected"),
    "MAIL without an address": ([connect(), p.packet(b"M")], "mail", "connected"),
    "RCPT without an address": ([connect(), *mail(), p.packet(b"R")], "rcpt", "mail"),
}


@pytest.mark.parametrize("case", list(OUT_OF_ORDER))
def test_a_command_out_of_order_or_without_its_argument_is_a_protocol_error(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """Refused before any callback runs: no 451, no internal error, the state and command named."""
    caplog.set_level(logging.INFO, "reputable")
    packets, command, state = OUT_OF_ORDER[case]

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            mta.send(packets)
            await closed_without_reply(mta)
            await mta.close()
            await until(lambda: holder.sessions == 0)

    run(scenario())
    (line,) = events(caplog)
    assert (line["event"], line["command"], line["state"]) == ("protocol_error", command, state)


def test_nothing_but_negotiation_comes_first(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            mta.send([connect()])
            await closed_without_reply(mta)
            await mta.close()

    run(scenario())
    (line,) = events(caplog)
    assert (line["event"], line["command"], line["state"]) == ("protocol_error", "connect", "init")


# P10: negotiation


async def offer(mta: Mta, version: int, actions: int, protocol: int) -> tuple[int, int]:
    mta.send([p.packet(b"O", struct.pack(">III", version, actions, protocol))])
    code, data = await mta.read()
    assert code == b"O"
    _, ours, steps = struct.unpack_from(">III", data)
    return ours, steps


def test_negotiation_answers_no_bit_it_does_not_know(holder: RuntimeHolder) -> None:
    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            actions, steps = await offer(mta, 6, 0xFFFFFFFF, 0xFFFFFFFF)
            assert actions == p.ADDHDRS | p.CHGHDRS | p.QUARANTINE | p.SETSYMLIST
            assert steps & ~p.KNOWN_STEPS == 0  # not SMFIP_MDS_256K/1M, nothing undefined
            assert steps & p.P_NR_HDR and steps & p.P_HDR_LEADSPC
            await mta.through_headers()  # and the conversation goes on
            await mta.close()

    run(scenario())


@pytest.mark.parametrize(
    ("actions", "missing"),
    [(0, "add_header, quarantine"), (p.ADDHDRS | p.SETSYMLIST, "quarantine")],
)
def test_an_mta_that_does_not_allow_the_actions_needed_is_refused(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture, actions: int, missing: str
) -> None:
    caplog.set_level(logging.INFO, "reputable")

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            mta.send([p.packet(b"O", struct.pack(">III", 6, actions, 0x1FFFFF))])
            await closed_without_reply(mta)
            await mta.close()

    run(scenario())
    (line,) = events(caplog)
    assert (line["event"], line["command"]) == ("protocol_error", "optneg")
    assert f"without {missing}, which reputable needs" in str(line["detail"])


def test_a_unix_socket_peer_may_skip_every_step_it_was_told_to(
    holder: RuntimeHolder, tmp_path: Path
) -> None:
    """As Postfix does over a unix socket: no RCPT, DATA, no reply to HELO; ABORT after the message."""

    async def scenario() -> None:
        async with engine(holder, tmp_path / "m.sock") as listener:
            mta = await Mta.open(listener)
            _, steps, _ = await mta.negotiate()
            assert steps & p.P_NODATA and steps & p.P_NORCPT and steps & p.P_NR_HELO
            for queue_id in ("Q1", "Q2"):
                mta.send([connect() if queue_id == "Q1" else b"", *mail()])
                mta.send([*headers(queue_id=queue_id), *end_of_headers(queue_id)])
                assert await mta.until_final() == [(b"c", b"")]
                mta.send([*body_and_end(queue_id=queue_id), p.packet(b"A")])
                assert [c for c, _ in await mta.until_final()] == [b"i", b"i", b"a"]
            started = time.monotonic()
            mta.send([p.packet(b"Q")])
            await closed_without_reply(mta)
            assert time.monotonic() - started < 5
            await mta.close()

    run(scenario())
