"""`reputable milter` as a process: what SIGTERM and an idle MTA connection do to open sessions.

The MTA side is written by hand (the protocol helpers of the engine's own
tests), so the test decides exactly when the signal arrives.
"""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
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


@pytest.fixture
def milter(dns_server: DnsServer, tmp_path: Path) -> Iterator[MilterDaemon]:
    keys = tmp_path / "keys"
    config = Config(signing=SigningConfig(domains=("example.com",), keys=keys))
    assert new_command(config, "example.com", "r1", "rsa", 2048, False, out=io.StringIO()) == 0
    socket_path = tmp_path / "milter.sock"
    daemon = MilterDaemon(
        tmp_path, keys, ["example.com"], dns_server.address, listen=f"unix:{socket_path}"
    )
    yield daemon
    daemon.stop()


async def open_mta(path: Path) -> Mta:
    reader, writer = await asyncio.open_unix_connection(str(path))
    mta = Mta(reader, writer)
    await mta.negotiate()
    return mta


def test_sigterm_lets_the_message_in_progress_finish_and_closes_idle_connections(
    milter: MilterDaemon,
) -> None:
    milter.start()
    path = Path(milter.libmilter_socket.removeprefix("unix:"))

    async def scenario() -> None:
        busy, idle = await open_mta(path), await open_mta(path)
        busy.send([connect(), *mail(), *headers(), *end_of_headers("T1")])
        assert await busy.until_final() == [(b"c", b"")]
        assert milter.process is not None
        milter.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        # New connections are refused, the idle one is closed, the open message goes on.
        with pytest.raises(OSError):
            await asyncio.open_unix_connection(str(path))
        assert await idle.reader.read() == b""
        busy.send(body_and_end(queue_id="T1"))
        assert [code for code, _ in await busy.until_final()] == [b"i", b"a"]
        assert await busy.reader.read() == b""  # then that one is closed too
        await busy.close()
        await idle.close()

    run(scenario())
    assert milter.process is not None
    assert milter.process.wait(10) == 0
    (line,) = milter.message_lines()
    assert (line["queue_id"], line["action"], line["dkim"]) == ("T1", "accept", "example.com/r1")


def test_a_connection_left_silent_is_closed_after_milter_timeout(milter: MilterDaemon) -> None:
    milter.milter_timeout = "1s"
    milter.start()
    path = Path(milter.libmilter_socket.removeprefix("unix:"))

    async def scenario() -> None:
        mta = await open_mta(path)
        mta.send([connect(), *mail()])
        assert await mta.reader.read() == b""  # closed by the milter, not by us
        await mta.close()

    run(scenario(), 10)
    events = [line.get("event") for line in milter.lines()]
    assert "timeout" in events


def test_the_start_and_reloaded_lines_say_the_mode(milter: MilterDaemon) -> None:
    milter.start()  # the fixture's config: mode = "monitor"
    (start,) = milter.wait_for_event("start")
    assert (start["mode"], start["domain"], start["keys"]) == (
        "monitor",
        "example.com",
        "example.com/r1/rsa-sha256",
    )
    milter.mode = "enforce"
    milter.write_config()
    milter.reload()
    (reloaded,) = milter.wait_for_event("reloaded")
    assert reloaded["mode"] == "enforce"
