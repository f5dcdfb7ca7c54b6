"""The milter's own protocol engine over a real unix socket, packet by packet, as Postfix talks.

An MTA written here sends Postfix's packets and reads every reply, so the
tests see exactly what Postfix would: which steps are answered at all, what
each answer is, and that a broken peer or a broken message loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reputable.config import MilterSocket
from reputable.errors import ConfigError
from reputable.log import record_fields
from reputable.milter import protocol as p
from reputable.milter import server as server_module
from reputable.milter import session as session_module
from reputable.milter.server import Listener, new_event_loop
from reputable.reputation import WouldBlock, forbid_waiting
from reputable.runtime import RuntimeHolder
from tests.unit.milter.test_session import BODY, HEADERS, runtime_for, verifies

FINAL = frozenset(b"acdrty")


@contextlib.asynccontextmanager
async def engine(holder: RuntimeHolder, address: Path | int) -> AsyncIterator[Listener]:
    """The milter's listener in this loop, as `reputable milter` runs it.

    *address*: a unix socket path, or a TCP port on 127.0.0.1 (0: any free one).
    """
    executor = ThreadPoolExecutor(4)
    config = holder.current.config
    listen = (
        MilterSocket("unix", str(address))
        if isinstance(address, Path)
        else MilterSocket("inet", host="127.0.0.1", port=address)
    )
    listener = Listener(
        holder, replace(config, milter=replace(config.milter, socket=listen)), executor
    )
    forbid_waiting()
    await listener.open()
    try:
        yield listener
    finally:
        await listener.close(0)
        forbid_waiting(False)
        executor.shutdown()


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until *condition* holds (the test's own timeout bounds it)."""
    while not condition():
        await asyncio.sleep(0.005)


class Mta:
    """Postfix's side of one milter connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, listener: Listener) -> Mta:
        listen = listener.config.milter.socket
        if listen.kind == "unix":
            reader, writer = await asyncio.open_unix_connection(listen.path)
        else:
            assert listener.server is not None
            host, port = listener.server.sockets[0].getsockname()[:2]
            reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    def send(self, packets: Iterable[bytes]) -> None:
        self.writer.write(b"".join(packets))

    async def read(self) -> tuple[bytes, bytes]:
        (length,) = struct.unpack(">I", await self.reader.readexactly(4))
        data = await self.reader.readexactly(length)
        return data[:1], data[1:]

    async def until_final(self) -> list[tuple[bytes, bytes]]:
        """Replies up to and including the next one that ends a step."""
        replies = [await self.read()]
        while replies[-1][0][0] not in FINAL:
            replies.append(await self.read())
        return replies

    async def negotiate(self) -> tuple[int, int, dict[int, bytes]]:
        self.send([p.packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))])
        code, data = await self.read()
        assert code == b"O"
        _, actions, protocol = struct.unpack_from(">III", data)
        symlists: dict[int, bytes] = {}
        rest = data[12:]
        while rest:
            (stage,) = struct.unpack_from(">I", rest)
            names, _, rest = rest[4:].partition(b"\0")
            symlists[stage] = names
        return actions, protocol, symlists

    async def through_headers(self) -> None:
        """A message from an internal client up to the end of its headers (over TCP: DATA too)."""
        self.send([connect(), *mail(), p.packet(b"T"), *headers(), *end_of_headers()])
        assert await self.until_final() == [(b"c", b"")]  # DATA
        assert await self.until_final() == [(b"c", b"")]  # end of headers

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def macros(stage: bytes, **values: str) -> bytes:
    flat = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in values.items())
    return p.packet(b"D", stage + flat)


def connect(ip: str = "127.0.0.1", hostname: str = "client.example", port: int = 40000) -> bytes:
    family = b"6" if ":" in ip else b"4"
    return p.packet(
        b"C", hostname.encode() + b"\0" + family + struct.pack(">H", port) + ip.encode() + b"\0"
    )


def mail(sender: str = "<alice@example.com>", auth: str | None = None) -> list[bytes]:
    given = {"{auth_authen}": auth} if auth else {}
    return [macros(b"M", **given), p.packet(b"M", sender.encode() + b"\0")]


def headers(fields: list[tuple[str, bytes]] = HEADERS, queue_id: str = "4Xy1") -> list[bytes]:
    """As Postfix sends them: the end-of-header macros again before each one, tagged "L"."""
    return [
        packet
        for name, value in fields
        for packet in (
            macros(b"L", i=queue_id),
            p.packet(b"L", name.encode() + b"\0" + value + b"\0"),
        )
    ]


def end_of_headers(queue_id: str = "4Xy1") -> list[bytes]:
    return [macros(b"N", i=queue_id), p.packet(b"N")]


def body_and_end(body: bytes = BODY, queue_id: str = "4Xy1") -> list[bytes]:
    return [
        macros(b"B", i=queue_id),
        p.packet(b"B", body),
        macros(b"E", i=queue_id),
        p.packet(b"E"),
    ]


def signed(
    replies: list[tuple[bytes, bytes]],
    fields: list[tuple[str, bytes]] = HEADERS,
    body: bytes = BODY,
) -> bytes:
    """The message as Postfix passes it on: inserted fields on top, then the original."""
    added = b""
    for code, data in replies:
        if code == b"i":
            name, value, _ = data[4:].split(b"\0")
            added += (name + b":" + value).replace(b"\n", b"\r\n") + b"\r\n"
    original = b"".join(n.encode() + b":" + v.replace(b"\n", b"\r\n") + b"\r\n" for n, v in fields)
    return added + original + b"\r\n" + body


@pytest.fixture
def holder(keys_dir: Path) -> RuntimeHolder:
    return RuntimeHolder(runtime_for(keys_dir))


def run(test: Coroutine[Any, Any, None], timeout_s: float = 20) -> None:
    """Run a scenario on the event loop `reputable milter` uses."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(asyncio.wait_for(test, timeout_s))


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_a_signed_message_costs_few_round_trips_and_verifies(
    holder: RuntimeHolder, tmp_path: Path, kind: str
) -> None:
    async def scenario() -> None:
        async with engine(holder, tmp_path / "m.sock" if kind == "unix" else 0) as listener:
            mta = await Mta.open(listener)
            actions, protocol, symlists = await mta.negotiate()
            assert actions == p.ADDHDRS | p.CHGHDRS | p.QUARANTINE | p.SETSYMLIST
            nr = (p.P_NR_CONN, p.P_NR_HELO, p.P_NR_MAIL, p.P_NR_HDR, p.P_NR_BODY, p.P_HDR_LEADSPC)
            for flag in nr:
                assert protocol & flag
            for flag in (p.P_NORCPT, p.P_NOUNKNOWN):
                assert protocol & flag  # steps reputable does not use are not sent at all
            assert symlists == {2: b"{auth_authen}", 6: b"i", 5: b"i"}
            if kind == "tcp":
                # DATA is answered: Postfix then sends no lone macro packet for Nagle to hold.
                assert not protocol & p.P_NODATA
                mta.send([connect(), *mail(), p.packet(b"T")])  # connect and MAIL: no reply
                assert await mta.until_final() == [(b"c", b"")]
                mta.send([*headers(), *end_of_headers()])
            else:
                # No Nagle on a unix socket: DATA is skipped, one round trip less.
                assert protocol & p.P_NODATA
                mta.send([connect(), *mail(), *headers(), *end_of_headers()])
            assert await mta.until_final() == [(b"c", b"")]
            mta.send(body_and_end())
            replies = await mta.until_final()
            assert [code for code, _ in replies] == [b"i", b"i", b"a"]
            assert all(data[:4] == b"\0\0\0\0" for _, data in replies[:2])  # inserted on top
            message = signed(replies)
            assert verifies(message, 0, holder.current) and verifies(message, 1, holder.current)
            assert not verifies(message.replace(b"the body", b"a body"), 0, holder.current)
            await mta.close()
            await until(lambda: holder.sessions == 0)

    run(scenario())


def test_the_same_conversation_fed_one_byte_at_a_time(holder: RuntimeHolder) -> None:
    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            stream = b"".join(
                [connect(), *mail(), p.packet(b"T"), *headers(), *end_of_headers(), *body_and_end()]
            )
            for i in range(len(stream)):
                mta.send([stream[i : i + 1]])
                await mta.writer.drain()
            replies = [*(await mta.until_final()), *(await mta.until_final())]
            replies += await mta.until_final()
            assert [code for code, _ in replies] == [b"c", b"c", b"i", b"i", b"a"]
            assert verifies(signed(replies[2:]), 0, holder.current)
            await mta.close()

    run(scenario())


def test_macros_of_one_message_do_not_leak_into_the_next(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture
) -> None:
    """An authenticated message, then one without a login, over one connection from outside."""
    caplog.set_level(logging.INFO, "reputable")
    holder.replace(runtime_for(holder.current.config.signing.keys, internal_hosts=()))

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            mta.send([connect("198.51.100.7"), *mail(auth="alice"), p.packet(b"T")])
            await mta.until_final()
            mta.send([*headers(), *end_of_headers("Q1")])
            assert await mta.until_final() == [(b"c", b"")]
            mta.send(body_and_end(queue_id="Q1"))
            assert [c for c, _ in await mta.until_final()] == [b"i", b"i", b"a"]
            mta.send([*mail(), p.packet(b"T")])  # same client, no SASL login this time
            await mta.until_final()
            mta.send([*headers(), *end_of_headers("Q2")])
            # Not outbound: accepted at the end of headers, the body is not even asked for.
            assert await mta.until_final() == [(b"a", b"")]
            await mta.close()

    run(scenario())
    lines = [record_fields(r) for r in caplog.records if "action" in record_fields(r)]
    assert [(line["queue_id"], line["source"]) for line in lines] == [
        ("Q1", "authenticated"),
        ("Q2", "external"),
    ]


def test_a_failure_in_an_unanswered_step_is_answered_at_the_end_with_451(
    holder: RuntimeHolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Exploding(session_module.MessageSigner):  # type: ignore[misc,name-defined]
        def body(self, chunk: bytes) -> None:
            raise RuntimeError("disk on fire")

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            monkeypatch.setattr(session_module, "MessageSigner", Exploding)
            await mta.through_headers()
            mta.send(body_and_end())
            (reply,) = await mta.until_final()
            assert reply[0] == b"y" and reply[1].startswith(b"451 4.3.0 ")
            monkeypatch.undo()
            # The connection goes on: the next message is signed.
            mta.send([*mail(), p.packet(b"T"), *headers(), *end_of_headers()])
            await mta.until_final()
            await mta.until_final()
            mta.send(body_and_end())
            assert [c for c, _ in await mta.until_final()] == [b"i", b"i", b"a"]
            await mta.close()

    run(scenario())


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack(">I", 0xFFFFFFFF) + b"B",  # a length no MTA sends
        struct.pack(">I", 1 << 20) + b"B",  # a 1 MiB body chunk: refused before its data
        p.packet(b"Z", b"what"),  # no such command
        p.packet(b"C", b"no-family"),  # a connect without its family
    ],
)
def test_a_peer_that_does_not_speak_the_protocol_is_disconnected(
    holder: RuntimeHolder, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "reputable")

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            mta.send([garbage])
            assert await mta.reader.read() == b""  # closed, nothing answered
            await mta.close()
            await until(lambda: not listener.connections)
        assert holder.sessions == 0

    run(scenario())
    events = [record_fields(r).get("event") for r in caplog.records]
    assert "protocol_error" in events


def test_a_connection_lost_mid_message_ends_its_session(holder: RuntimeHolder) -> None:
    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            mta.send([connect(), *mail(), p.packet(b"T"), *headers()[:2]])
            await mta.until_final()
            assert holder.sessions == 1
            await mta.close()
            await until(lambda: not listener.connections)
        assert holder.sessions == 0

    run(scenario())


def test_the_socket_gets_the_configured_mode_and_replaces_a_stale_one(
    holder: RuntimeHolder, tmp_path: Path
) -> None:
    path = tmp_path / "m.sock"

    async def scenario() -> None:
        async with engine(holder, path) as listener:
            assert path.stat().st_mode & 0o777 == holder.current.config.milter.socket_mode
        # A socket left behind (a crash) is replaced at the next start.
        async with engine(holder, path) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            await mta.close()

    run(scenario())


def test_a_lookup_outside_the_end_of_headers_closes_the_connection_instead_of_hanging(
    holder: RuntimeHolder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Only end of headers is run again on a worker; elsewhere WouldBlock is a fault."""
    caplog.set_level(logging.WARNING, "reputable")

    class Waiting(session_module.MessageSigner):  # type: ignore[misc,name-defined]
        def body(self, chunk: bytes) -> None:
            raise WouldBlock("a lookup in the body step")

    monkeypatch.setattr(session_module, "MessageSigner", Waiting)

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            await mta.through_headers()
            mta.send(body_and_end())
            assert await mta.reader.read() == b""  # Postfix applies milter_default_action
            await mta.close()
            await until(lambda: holder.sessions == 0)

    run(scenario())
    assert "internal_error" in [record_fields(r).get("event") for r in caplog.records]


def test_a_unix_socket_another_milter_listens_on_is_not_taken_over(
    holder: RuntimeHolder, tmp_path: Path
) -> None:
    path = tmp_path / "m.sock"

    async def scenario() -> None:
        async with engine(holder, path):
            with pytest.raises(ConfigError) as refused:
                async with engine(holder, path):
                    pass
            assert "another process listens on it" in str(refused.value.problems[0])
            assert path.exists()  # the running one keeps its socket

    run(scenario())


def test_a_reload_rebuilds_the_gate_engine_on_a_worker_while_mail_flows(
    holder: RuntimeHolder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding the host's identity may wait on DNS: the loop goes on serving meanwhile."""
    caplog.set_level(logging.INFO, "reputable")
    building, release = threading.Event(), threading.Event()

    class SlowEngine:
        def __init__(self, holder: RuntimeHolder) -> None:
            building.set()
            release.wait(10)

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

    monkeypatch.setattr(server_module, "Reputation", SlowEngine)
    monkeypatch.setattr(server_module, "configure_logging", lambda config: None)

    def events() -> list[object]:
        return [record_fields(r).get("event") for r in caplog.records]

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            server_module.reload(holder, lambda: holder.current.config, listener.executor)
            await until(building.is_set)
            mta = await Mta.open(listener)
            await mta.negotiate()
            await mta.through_headers()
            mta.send(body_and_end())
            assert [c for c, _ in await mta.until_final()] == [b"i", b"i", b"a"]
            assert "reloaded" not in events()  # the engine is still being built
            release.set()
            await until(lambda: "reloaded" in events())
            assert isinstance(holder.reputation, SlowEngine)
            await mta.close()

    try:
        run(scenario())
    finally:
        release.set()
        holder.reputation = None
