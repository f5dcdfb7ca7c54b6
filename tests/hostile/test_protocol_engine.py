"""A hostile peer against the real daemon: the protocol engine's own limits.

One test (or a few) per row: P1 lengths and buffers, P2 backpressure, P3
macros, P7 macros that outlive their message, P8 MAIL or RCPT without an
argument, P9 commands out of order, P10 negotiation. Each asserts the fixed
behaviour with a bound that the code before these limits missed by far (the figures it
measured are in the comments), generous enough for a shared 2-core machine.
A legitimate signed transaction runs beside every attack and must complete in
time, and no attack may make the daemon log an internal error or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reputable.milter import protocol as p
from tests.hostile.peer import (
    Daemon,
    closed_by_daemon,
    open_files,
    open_many,
    open_mta,
    run,
    transaction,
    transactions_during,
)
from tests.integration.harness.dnsserver import DnsServer
from tests.unit.milter.test_connection import (
    Mta,
    body_and_end,
    connect,
    end_of_headers,
    headers,
    mail,
)

pytestmark = pytest.mark.integration

SCENARIO_TIMEOUT_S = 120
# Written out, not taken from reputable: the limits the tests hold the code to.
CHUNK = 65535  # Postfix's body chunk (MILTER_CHUNK_SIZE), libmilter's MILTER_MAX_DATA_SIZE
MAX_LENGTH = CHUNK + 1  # with the command byte
LEGITIMATE_S = 2.0  # the slowest legitimate transaction during an attack (usually 10-60 ms)


@pytest.fixture
def start(dns: DnsServer, keys: Path, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start `reputable milter` (stopped after the test), with enough descriptors here."""
    made: list[Daemon] = []

    def make(**options: str) -> Daemon:
        daemon = Daemon(tmp_path, keys, ["example.com"], dns.address, **options)  # type: ignore[arg-type]
        made.append(daemon)
        daemon.start()
        return daemon

    with open_files(4096):
        yield make
        for daemon in made:
            daemon.stop()


def assert_unharmed(daemon: Daemon) -> None:
    assert daemon.faults() == []
    assert "Traceback" not in daemon.stderr()


def peak_growth_mb(daemon: Daemon, rss_kb: int) -> float:
    return (daemon.status_kb("VmHWM") - rss_kb) / 1024


# P1: a length prefix trusted before its data arrives


CLAIMS = 1000


def test_p1_a_claimed_length_commits_nothing_and_a_claim_over_the_limit_is_refused_at_once(
    start: Callable[..., Daemon],
) -> None:
    """1,000 connections claim a 1 MiB body chunk, 1,000 a 1 MiB header; each sends 100 bytes.

    Before: none was closed, each holds a buffer the size of its claim (+912 MB), and a
    legitimate transaction meanwhile takes up to 7.8 s.
    """
    daemon = start()

    async def claim(peers: list[Mta], command: bytes) -> None:
        for peer in peers:
            peer.writer.write(struct.pack(">I", 1 << 20) + command)
        await asyncio.sleep(0.3)
        for peer in peers:  # the next read made room for the whole claim
            peer.writer.write(b"x" * 100)
        for peer in peers:
            with contextlib.suppress(ConnectionError):
                await peer.writer.drain()

    async def scenario() -> tuple[float, int, int, float]:
        await transaction(daemon, "W0")
        rss = daemon.status_kb("VmRSS")
        daemon.reset_peak()
        done = asyncio.Event()
        legitimate = asyncio.create_task(transactions_during(daemon, done, "L"))
        bodies, fields = await open_many(daemon, CLAIMS), await open_many(daemon, CLAIMS)
        await asyncio.gather(claim(bodies, b"B"), claim(fields, b"L"))
        await asyncio.sleep(2)
        grown = peak_growth_mb(daemon, rss)
        closed = await asyncio.gather(*(closed_by_daemon(peer, 10) for peer in bodies))
        kept = await asyncio.gather(*(closed_by_daemon(peer, 0.01) for peer in fields))
        done.set()
        took = await legitimate
        for peer in bodies + fields:
            await peer.close()
        return grown, sum(closed), CLAIMS - sum(kept), max(took)

    grown, closed, kept, slowest = run(scenario(), SCENARIO_TIMEOUT_S)
    print(
        f"P1 claims: peak RSS +{grown:.1f} MB, {closed} body claims closed, {kept} header "
        f"claims open, slowest legitimate {slowest:.3f} s"
    )
    assert grown < 40
    assert closed == CLAIMS
    assert kept == CLAIMS  # a header may be that long: it waits, holding what arrived
    assert slowest < LEGITIMATE_S
    refused = daemon.events("protocol_error")
    assert len(refused) == CLAIMS
    assert {(line["command"], line["detail"]) for line in refused} == {
        ("body", f"packet length {1 << 20} (allowed 1 to {MAX_LENGTH})")
    }
    assert_unharmed(daemon)


IDLE = 500


def test_p1_an_idle_connection_holds_a_few_kib_even_after_a_large_packet(
    start: Callable[..., Daemon],
) -> None:
    """500 connections each send a 64 KiB packet, then the start of another, and go idle.

    Before, each kept an 80 KiB buffer: +78 KiB per connection.
    """
    daemon = start()
    # Postfix's end-of-data macros before a body chunk (never stored), as large as allowed.
    large = p.packet(b"D", b"B" + b"x" * (CHUNK - 1))
    started = struct.pack(">I", MAX_LENGTH) + b"L" + b"y" * 10

    async def scenario() -> tuple[float, float]:
        await transaction(daemon, "W0")
        peers = await open_many(daemon, IDLE, negotiate=True)
        await asyncio.sleep(0.5)
        rss = daemon.status_kb("VmRSS")
        for peer in peers:
            peer.writer.write(large + started)
        await asyncio.gather(*(peer.writer.drain() for peer in peers))
        await asyncio.sleep(2)
        per_connection = (daemon.status_kb("VmRSS") - rss) / IDLE
        took = await transaction(daemon, "L0")
        for peer in peers:
            await peer.close()
        return per_connection, took

    per_connection, took = run(scenario(), SCENARIO_TIMEOUT_S)
    print(f"P1 idle: +{per_connection:.1f} KiB per idle connection, legitimate {took:.3f} s")
    assert per_connection < 16
    assert took < LEGITIMATE_S
    assert_unharmed(daemon)


def test_p1_a_peer_trickling_one_packet_is_timed_out(start: Callable[..., Daemon]) -> None:
    """A deadline per packet: a byte every 0.2 s does not keep it (before: open after 12 s)."""
    daemon = start(milter_timeout="2s")

    async def scenario() -> float | None:
        mta = await open_mta(daemon)
        mta.writer.write(struct.pack(">I", MAX_LENGTH) + b"L")
        began = time.monotonic()
        try:
            while time.monotonic() - began < 12:
                try:
                    mta.writer.write(b"x")
                    await mta.writer.drain()
                    if await closed_by_daemon(mta, 0.2):
                        return time.monotonic() - began
                except ConnectionError:
                    return time.monotonic() - began
            return None
        finally:
            await mta.close()

    after = run(scenario(), SCENARIO_TIMEOUT_S)
    print(f"P1 trickle: closed after {after} s")
    assert after is not None and after < 8
    assert daemon.events("timeout")
    assert_unharmed(daemon)


# P2: reading goes on while end of headers waits for DNS


ATTACK_S = 6.0


def test_p2_a_connection_waiting_for_its_lookup_is_not_read(
    start: Callable[..., Daemon], dns: DnsServer
) -> None:
    """After end of headers, body chunks streamed without waiting for the answer.

    Before, the daemon read them all, copying its backlog each time it grows: 6 s of
    attack cost 3.05 s of CPU and +19.5 MB, and held a legitimate transaction 5.4 s.
    """
    dns.set_drop("slow.example.net")
    daemon = start(dns_timeout="10s")
    chunk = p.packet(b"B", b"z" * CHUNK)

    async def scenario() -> tuple[float, float, int, float]:
        await transaction(daemon, "W0")
        attacker = await open_mta(daemon)
        attacker.send([connect(), *mail("<a@slow.example.net>"), p.packet(b"T")])
        assert await attacker.until_final() == [(b"c", b"")]
        attacker.send([*headers(), *end_of_headers()])
        await asyncio.to_thread(dns.wait_for_query, "slow.example.net", timeout=10)
        rss = daemon.status_kb("VmRSS")
        daemon.reset_peak()
        cpu = daemon.cpu_s()
        done = asyncio.Event()
        legitimate = asyncio.create_task(transactions_during(daemon, done, "L"))
        sent = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ATTACK_S):
                while True:
                    attacker.writer.write(chunk)
                    sent += len(chunk)
                    await attacker.writer.drain()
        cpu = daemon.cpu_s() - cpu
        grown = peak_growth_mb(daemon, rss)
        done.set()
        took = await legitimate
        await attacker.close()
        return cpu, grown, sent, max(took)

    try:
        cpu, grown, sent, slowest = run(scenario(), SCENARIO_TIMEOUT_S)
    finally:
        dns.set_drop("slow.example.net", False)
    print(
        f"P2: {cpu:.2f} s CPU in {ATTACK_S} s, peak RSS +{grown:.1f} MB, {sent >> 20} MiB sent, "
        f"slowest legitimate {slowest:.3f} s"
    )
    assert cpu < 0.2 * ATTACK_S
    assert grown < 8
    assert sent < 64 << 20  # the rest waits in the peer's own socket
    assert slowest < LEGITIMATE_S
    assert_unharmed(daemon)


# P3: macro amplification


def test_p3_macros_cost_what_they_weigh(start: Callable[..., Daemon]) -> None:
    """40 connections send 7 macro packets of 60 KB each, one per stage that is kept.

    Half hold 10,000 names each, half one 60 KB value. Before: all kept, +126 MB, and a
    legitimate transaction meanwhile takes up to 3.5 s.
    """
    daemon = start()
    many = b"".join(b"%x\0v\0" % i for i in range(10_000))
    long = b"n\0" + b"v" * 60_000 + b"\0"

    async def scenario() -> tuple[float, int, float]:
        await transaction(daemon, "W0")
        rss = daemon.status_kb("VmRSS")
        daemon.reset_peak()
        done = asyncio.Event()
        legitimate = asyncio.create_task(transactions_during(daemon, done, "L"))
        peers = await open_many(daemon, 40, negotiate=True)
        for i, peer in enumerate(peers):
            macros = many if i % 2 else long
            peer.send([p.packet(b"D", bytes([stage]) + macros) for stage in b"CHMRTNE"])
        closed = await asyncio.gather(*(closed_by_daemon(peer, 10) for peer in peers))
        grown = peak_growth_mb(daemon, rss)
        done.set()
        took = await legitimate
        for peer in peers:
            await peer.close()
        return grown, sum(closed), max(took)

    grown, closed, slowest = run(scenario(), SCENARIO_TIMEOUT_S)
    print(f"P3: peak RSS +{grown:.1f} MB, {closed} closed, slowest legitimate {slowest:.3f} s")
    assert grown < 40
    assert closed == 40
    assert slowest < LEGITIMATE_S
    refused = daemon.events("protocol_error")
    assert len(refused) == 40 and {line["command"] for line in refused} == {"macro"}
    assert_unharmed(daemon)


# P7: {auth_authen} survives into the next message


def test_p7_a_login_does_not_outlive_its_message(start: Callable[..., Daemon]) -> None:
    """Authenticated, accepted at end of headers; then a message without a login.

    Before, the second was logged source=authenticated and signed.
    """
    daemon = start()

    async def scenario() -> list[tuple[bytes, bytes]]:
        mta = await open_mta(daemon)
        mta.send([connect("198.51.100.7"), *mail(auth="alice"), p.packet(b"T")])
        assert await mta.until_final() == [(b"c", b"")]
        elsewhere = [("From", b" Alice <alice@example.net>"), ("Subject", b" one")]
        mta.send([*headers(elsewhere, "Q1"), *end_of_headers("Q1")])
        assert await mta.until_final() == [(b"a", b"")]  # no key for example.net: accepted
        mta.send([p.packet(b"M", b"<bob@example.com>\0"), p.packet(b"T")])  # no login
        assert await mta.until_final() == [(b"c", b"")]
        mta.send([*headers(queue_id="Q2"), *end_of_headers("Q2")])
        assert await mta.until_final() == [(b"c", b"")]  # received mail: its body is verified
        mta.send(body_and_end(queue_id="Q2"))
        end = await mta.until_final()
        await mta.close()
        return end

    end = run(scenario(), SCENARIO_TIMEOUT_S)
    lines = {line["queue_id"]: line for line in daemon.wait_for_messages(2)}
    sources = {queue_id: line["source"] for queue_id, line in lines.items()}
    print(f"P7: sources {sources}")
    assert sources == {"Q1": "authenticated", "Q2": "external"}
    # From outside: verified, never signed.
    added = [data[4:].split(b"\0")[0] for code, data in end if code == b"i"]
    assert added == [b"Authentication-Results"] and end[-1] == (b"a", b"")
    assert lines["Q2"]["dkim"] == "none" and lines["Q2"]["reason"] == "not_outbound"
    assert_unharmed(daemon)


# P8: MAIL or RCPT without an argument


@pytest.mark.parametrize("command", ["mail", "rcpt"])
def test_p8_an_envelope_command_without_its_address_is_a_protocol_error(
    start: Callable[..., Daemon], command: str
) -> None:
    """Before: event=error IndexError and internal_error."""
    daemon = start()
    if command == "mail":
        packets = [connect(), p.packet(b"M")]
    else:
        packets = [connect(), *mail(), p.packet(b"R")]

    async def scenario() -> tuple[bool, float]:
        mta = await open_mta(daemon)
        mta.send(packets)
        closed = await closed_by_daemon(mta, 10)
        await mta.close()
        return closed, await transaction(daemon, "L0")

    closed, took = run(scenario(), SCENARIO_TIMEOUT_S)
    assert closed
    assert took < LEGITIMATE_S
    assert_unharmed(daemon)
    (line,) = daemon.events("protocol_error")
    assert (line["command"], line["detail"]) == (command, f"{command} without an address")


# P9: no protocol state machine


OUT_OF_ORDER = {
    "bodyeob": p.packet(b"E"),
    "eoh": p.packet(b"N"),
    "header": p.packet(b"L", b"Subject\0 hi\0"),
}


@pytest.mark.parametrize("command", list(OUT_OF_ORDER))
def test_p9_a_message_step_before_mail_is_refused_before_any_callback(
    start: Callable[..., Daemon], command: str
) -> None:
    """Before: 451 and AssertionError() in the log (or, for a header, silence)."""
    daemon = start()

    async def scenario() -> tuple[bytes, bool, float]:
        mta = await open_mta(daemon)
        mta.send([connect(), OUT_OF_ORDER[command]])
        answered = b""
        with contextlib.suppress(TimeoutError):
            answered = await asyncio.wait_for(mta.reader.read(65536), 5)
        closed = answered == b"" and await closed_by_daemon(mta, 5)
        await mta.close()
        return answered, closed, await transaction(daemon, "L0")

    answered, closed, took = run(scenario(), SCENARIO_TIMEOUT_S)
    assert answered == b""  # no 451: the MTA applies its milter_default_action
    assert closed
    assert took < LEGITIMATE_S
    assert_unharmed(daemon)
    (line,) = daemon.events("protocol_error")
    assert (line["command"], line["state"]) == (command, "connected")


# P10: negotiation


def test_p10_negotiation_answers_no_bit_it_does_not_know(start: Callable[..., Daemon]) -> None:
    """Before: an MTA offering protocol 0xffffffff gets undefined bits back."""
    daemon = start()

    async def scenario() -> tuple[int, int]:
        mta = await open_mta(daemon, negotiate=False)
        mta.send([p.packet(b"O", struct.pack(">III", 6, 0xFFFFFFFF, 0xFFFFFFFF))])
        code, data = await mta.read()
        assert code == b"O"
        _, actions, steps = struct.unpack_from(">III", data)
        await mta.close()
        return actions, steps

    actions, steps = run(scenario(), SCENARIO_TIMEOUT_S)
    print(f"P10: actions {actions:#x}, protocol {steps:#x}")
    assert actions == 0x131  # add_header, change_header, quarantine, setsymlist
    assert steps & ~0x1FFFFF == 0  # only protocol 6's bits
    assert_unharmed(daemon)


@pytest.mark.parametrize(
    ("actions", "missing"), [(0, "add_header, quarantine"), (0x1, "quarantine")]
)
def test_p10_an_mta_that_does_not_allow_the_actions_needed_is_refused(
    start: Callable[..., Daemon], actions: int, missing: str
) -> None:
    """Before, it was accepted, then every signable message got 451 internal_error."""
    daemon = start()

    async def scenario() -> tuple[bytes, float]:
        mta = await open_mta(daemon, negotiate=False)
        mta.send([p.packet(b"O", struct.pack(">III", 6, actions, 0x1FFFFF))])
        answered = b""
        with contextlib.suppress(TimeoutError):
            answered = await asyncio.wait_for(mta.reader.read(65536), 5)
        await mta.close()
        return answered, await transaction(daemon, "L0")

    answered, took = run(scenario(), SCENARIO_TIMEOUT_S)
    assert answered == b""  # closed, no options agreed
    assert took < LEGITIMATE_S
    assert_unharmed(daemon)
    (line,) = daemon.events("protocol_error")
    assert line["command"] == "optneg"
    assert f"without {missing}, which reputable needs" in line["detail"]
