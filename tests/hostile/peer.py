"""A peer that speaks the milter protocol to a real `reputable milter`, and what it measures.

The daemon listens on TCP 127.0.0.1, which any local user can reach. Memory is
read from /proc (VmHWM, the peak, reset through clear_refs before an attack,
and VmRSS), CPU from /proc/PID/stat. A legitimate transaction, from an
internal client and signed, runs beside each attack and is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from reputable.milter import protocol as p
from tests.integration.daemon import MilterDaemon
from tests.unit.milter.test_connection import (
    Mta,
    body_and_end,
    connect,
    end_of_headers,
    headers,
    mail,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def run(scenario: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Run a peer's scenario to its end, or fail it after *timeout_s*."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(scenario, timeout_s))


@dataclass
class Daemon(MilterDaemon):
    """`reputable milter` on TCP, with the [dns] timeout the test needs."""

    dns_timeout: str = "1s"

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text()
        text = re.sub(
            r'(\[dns\]\n(?:.*\n)*?)timeout = "[^"]*"', rf'\1timeout = "{self.dns_timeout}"', text
        )
        self.config_path.write_text(text)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def events(self, event: str) -> list[dict[str, str]]:
        return [line for line in self.lines() if line.get("event") == event]

    def faults(self) -> list[dict[str, str]]:
        """What must never be logged: an internal error, or any traceback."""
        return [line for line in self.lines() if line.get("event") in ("error", "internal_error")]

    def stderr(self) -> str:
        return (self.workdir / "stderr.txt").read_text(errors="replace")

    def status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def reset_peak(self) -> None:
        """VmHWM back to VmRSS (Linux 4.0+), so that the next peak is the attack's."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def cpu_s(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


@contextlib.contextmanager
def open_files(wanted: int) -> Iterator[None]:
    """Enough descriptors in this process (and the daemon it starts) for *wanted* sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        assert hard >= wanted, f"ulimit -Hn {hard} < {wanted}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def open_mta(daemon: MilterDaemon, negotiate: bool = True) -> Mta:
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    mta = Mta(reader, writer)
    if negotiate:
        await mta.negotiate()
    return mta


async def open_many(daemon: MilterDaemon, count: int, negotiate: bool = False) -> list[Mta]:
    peers: list[Mta] = []
    for start in range(0, count, 100):
        batch = range(start, min(count, start + 100))
        peers += await asyncio.gather(*(open_mta(daemon, negotiate) for _ in batch))
    return peers


async def closed_by_daemon(mta: Mta, within_s: float) -> bool:
    """Whether the daemon closes this connection (whatever it answered first) in time."""
    try:
        async with asyncio.timeout(within_s):
            while await mta.reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def transaction(daemon: MilterDaemon, queue_id: str) -> float:
    """One signed message from an internal client, start to end; its duration in seconds."""
    started = time.monotonic()
    mta = await open_mta(daemon)
    mta.send([connect(), *mail(), p.packet(b"T"), *headers(queue_id=queue_id)])
    mta.send(end_of_headers(queue_id))
    assert await mta.until_final() == [(b"c", b"")]  # over TCP: DATA, answered
    assert await mta.until_final() == [(b"c", b"")]
    mta.send(body_and_end(queue_id=queue_id))
    assert [code for code, _ in await mta.until_final()] == [b"i", b"a"]
    await mta.close()
    return time.monotonic() - started


async def transactions_during(daemon: MilterDaemon, until: asyncio.Event, tag: str) -> list[float]:
    """Legitimate transactions one after the other until *until* is set (at least one)."""
    took: list[float] = []
    while not took or not until.is_set():
        took.append(await transaction(daemon, f"{tag}{len(took)}"))
        await asyncio.sleep(0.2)
    return took
