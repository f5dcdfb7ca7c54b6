"""A hostile peer against the real daemon: header blocks and connections past every limit
with the legitimate MTA's mail going on beside it.

The peer speaks the milter protocol itself over TCP on 127.0.0.1, which any
local user can reach. Memory is read from /proc (VmHWM, the peak, reset through
clear_refs before each attack); the open-file limit is set with setrlimit in the
daemon's own process before `reputable milter` starts. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reputable.milter import protocol as p
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.unit.milter.test_connection import (
    Mta,
    body_and_end,
    connect,
    end_of_headers,
    headers,
    mail,
    run,
)

pytestmark = pytest.mark.integration

SCENARIO_TIMEOUT_S = 120
IDLE_CONNECTIONS = 2000
FROM = ("From", b" Alice <alice@example.com>")


@pytest.fixture(scope="module", autouse=True)
def enough_files() -> Iterator[None]:
    """This process holds the idle connections, and gives a daemon a hard limit of 4096."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(IDLE_CONNECTIONS + 500, 4096)
    assert hard == resource.RLIM_INFINITY or hard >= wanted, f"ulimit -Hn {hard} < {wanted}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@dataclass
class LimitedDaemon(MilterDaemon):
    """A daemon with more [milter] keys, started under a given open-file limit."""

    milter_keys: str = ""
    nofile: tuple[int, int] | None = None  # (soft, hard) set before `reputable milter` runs

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text()
        self.config_path.write_text(text.replace("[milter]\n", "[milter]\n" + self.milter_keys, 1))

    def start(self, env: dict[str, str] | None = None) -> LimitedDaemon:
        if self.nofile is None:
            super().start(env)
            return self
        self.write_config()
        soft, hard = self.nofile
        # setrlimit, then exec: the daemon is this very process (no preexec_fn in a threaded test).
        code = (
            "import os, resource, sys\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
            "os.execv(sys.executable, [sys.executable, '-m', 'reputable', 'milter'])\n"
        )
        env = {**os.environ, "REPUTABLE_CONFIG": str(self.config_path), **(env or {})}
        with (self.workdir / "stderr.txt").open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        self.wait_for_event("start")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def events(self, event: str) -> list[dict[str, str]]:
        return [line for line in self.lines() if line.get("event") == event]


@pytest.fixture
def daemon(dns: DnsServer, keys: Path, tmp_path: Path) -> Iterator[Callable[..., LimitedDaemon]]:
    made: list[LimitedDaemon] = []

    def make(**options: object) -> LimitedDaemon:
        started = LimitedDaemon(tmp_path, keys, ["example.com"], dns.address, **options)  # type: ignore[arg-type]
        made.append(started)
        return started.start()

    yield make
    for started in made:
        started.stop()


def proc_status(pid: int, key: str) -> int:
    """A value of /proc/PID/status (VmRSS, VmHWM in KiB; Threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise KeyError(key)


def reset_peak(pid: int) -> int:
    """Reset the process's peak RSS (VmHWM) to its RSS now; returns that, in KiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return proc_status(pid, "VmRSS")


async def open_mta(port: int) -> Mta:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    mta = Mta(reader, writer)
    await mta.negotiate()
    return mta


async def send_signed_message(port: int, queue_id: str) -> float:
    """A legitimate message from an internal client, signed; returns the seconds it took."""
    started = time.monotonic()
    mta = await open_mta(port)
    mta.send([connect(), *mail(), p.packet(b"T")])
    assert await mta.until_final() == [(b"c", b"")]
    mta.send([*headers([FROM], queue_id), *end_of_headers(queue_id)])
    assert await mta.until_final() == [(b"c", b"")]
    mta.send(body_and_end(queue_id=queue_id))
    assert [code for code, _ in await mta.until_final()] == [b"i", b"a"]
    await mta.close()
    return time.monotonic() - started


async def header_flood(port: int, field: bytes, count: int, queue_id: str) -> tuple[bytes, bytes]:
    """One message whose header block is *count* copies of one field; the end-of-headers reply."""
    mta = await open_mta(port)
    mta.send([connect(), *mail(), p.packet(b"T")])
    assert await mta.until_final() == [(b"c", b"")]
    name, _, value = field.partition(b":")
    packet = p.packet(b"L", name + b"\0" + value + b"\0")
    batch = max(1, (1 << 20) // len(packet))
    sent = 0
    while sent < count:
        mta.writer.write(packet * min(batch, count - sent))
        sent += batch
        await mta.writer.drain()
    mta.send(end_of_headers(queue_id))
    (reply,) = await mta.until_final()
    await mta.close()
    return reply


# --- P4: the header block ---


def test_huge_or_countless_header_fields_leave_the_milter_s_memory_where_it_was(
    daemon: Callable[..., LimitedDaemon],
) -> None:
    """Before: 2,000 fields of 60 KB took the peak RSS up by 114 MB, 500,000 tiny ones by about
    50 MB (2 million: 197 MB and 20 s of CPU), and both were accepted."""
    milter = daemon()
    peaks: dict[str, float] = {}
    replies: dict[str, tuple[bytes, bytes]] = {}

    async def scenario() -> None:
        for queue_id, field, count in [
            ("HUGE1", b"X-Big: " + b"v" * 60_000, 2_000),  # 120 MB in one header block
            ("TINY1", b"X: y", 500_000),
        ]:
            before = reset_peak(milter.pid)
            replies[queue_id] = await header_flood(milter.port, field, count, queue_id)
            peaks[queue_id] = (proc_status(milter.pid, "VmHWM") - before) / 1024
        # After them, mail goes on as before.
        await send_signed_message(milter.port, "LEGIT1")

    run(scenario(), SCENARIO_TIMEOUT_S)
    print(f"peak RSS growth: {peaks}")
    assert peaks["HUGE1"] < 40, peaks  # MB: the 1 MiB cap, plus a packet or two in flight
    assert peaks["TINY1"] < 25, peaks
    for reply in replies.values():  # on_error = tempfail, the default
        assert reply[0] == b"y" and reply[1].startswith(b"451 4.3.4 "), reply
    reasons = {line["queue_id"]: line.get("reason") for line in milter.message_lines()}
    assert reasons == {
        "HUGE1": "headers_too_large",
        "TINY1": "too_many_headers",
        "LEGIT1": None,
    }
    assert all(line["dkim"] == "none" for line in milter.message_lines()[:2])


# --- P5: connections ---


async def hold_idle(
    port: int, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Open *count* connections and send nothing on them (as an attacker holding them)."""
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]


async def closed_at_once(
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], within_s: float
) -> int:
    """How many of *held* the milter closed (EOF or reset) within *within_s*."""

    async def eof(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1), within_s) == b""
        except TimeoutError:
            return False
        except OSError:
            return True

    return sum(await asyncio.gather(*(eof(reader) for reader, _ in held)))


def close_all(held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in held:
        if not writer.is_closing():
            writer.close()


def test_idle_connections_under_a_low_soft_limit_leave_the_mta_room(
    daemon: Callable[..., LimitedDaemon],
) -> None:
    """Before: under nofile 1024:4096 the daemon kept the soft limit; of 2,000 idle connections
    991 were reset, the legitimate one too (ECONNRESET), and the key watcher failed (EMFILE)."""
    milter = daemon(nofile=(1024, 4096))
    took: list[float] = []

    async def scenario() -> None:
        held = await hold_idle(milter.port, IDLE_CONNECTIONS)
        try:
            assert await closed_at_once(held, 0.5) == 0
            took.append(await send_signed_message(milter.port, "ROOM1"))
        finally:
            close_all(held)

    run(scenario(), SCENARIO_TIMEOUT_S)
    assert took[0] < 5, took
    assert not milter.events("keywatch_error")
    limits = Path(f"/proc/{milter.pid}/limits").read_text()
    (files,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert files.split()[3:5] == ["4096", "4096"]  # raised to the hard limit at start
    (start,) = milter.events("start")
    assert start["max_connections"] == str(4096 - 192)


def test_past_max_connections_new_ones_are_refused_at_once_and_the_log_says_so(
    daemon: Callable[..., LimitedDaemon],
) -> None:
    """Before: past the fd limit connections were reset with no word in the log but the key
    watcher's "Too many open files", and DNS lookups failed for want of a socket."""
    milter = daemon(nofile=(1024, 1024))
    limit = 1024 - 192  # the derived max_connections: the limit less the reserve
    took: list[float] = []

    async def scenario() -> None:
        held = await hold_idle(milter.port, limit + 300)
        try:
            refused = await closed_at_once(held, 2.0)
            assert refused == 300, refused
            # The cap leaves descriptors for everything else: with room again, a message
            # that needs fresh lookups (SPF for its domain) goes through.
            close_all(held[:10])
            await asyncio.sleep(0.3)
            took.append(await send_signed_message(milter.port, "CAP1"))
        finally:
            close_all(held)

    run(scenario(), SCENARIO_TIMEOUT_S)
    assert took[0] < 5, took
    assert milter.events("start")[0]["max_connections"] == str(limit)
    lines = milter.events("connection_refused")
    assert len(lines) == 1  # rate-limited: the other refusals are counted for the next line
    assert (lines[0]["max_connections"], lines[0]["refused"]) == (str(limit), "1")
    assert "milter_default_action" in lines[0]["detail"]
    assert not milter.events("keywatch_error")
    assert "Too many open files" not in milter.log_path.read_text()


def test_a_configured_max_connections_is_the_cap(daemon: Callable[..., LimitedDaemon]) -> None:
    """Before: no such key (the start was refused, exit 78)."""
    milter = daemon(milter_keys="max_connections = 20\n")
    assert milter.events("start")[0]["max_connections"] == "20"

    async def scenario() -> None:
        held = await hold_idle(milter.port, 25)
        try:
            assert await closed_at_once(held, 2.0) == 5
            close_all(held[:1])
            await asyncio.sleep(0.3)
            await send_signed_message(milter.port, "TWENTY1")
        finally:
            close_all(held)

    run(scenario(), SCENARIO_TIMEOUT_S)
    assert milter.events("connection_refused")


def test_a_peer_trickling_a_packet_byte_by_byte_is_closed_after_timeout(
    daemon: Callable[..., LimitedDaemon],
) -> None:
    """Before: a peer sending a byte every 0.25 s kept its connection for ever: each byte
    reset the idle timer (measured: still open after 20 s with timeout = 2s)."""
    milter = daemon(milter_timeout="2s")
    took: list[float] = []

    async def scenario() -> None:
        trickler = await open_mta(milter.port)
        stream = b"".join([connect(), *mail(), *headers([FROM] * 50)])
        started = time.monotonic()
        for byte in stream:
            if trickler.reader.at_eof() or time.monotonic() - started > 15:
                break
            trickler.writer.write(bytes([byte]))
            try:
                await asyncio.wait_for(trickler.reader.read(1), 0.25)
            except TimeoutError:
                continue
            except OSError:
                break
        took.append(time.monotonic() - started)
        await trickler.close()

    run(scenario(), SCENARIO_TIMEOUT_S)
    assert took[0] < 8, took  # timeout 2 s, swept once a second
    assert milter.events("timeout")
