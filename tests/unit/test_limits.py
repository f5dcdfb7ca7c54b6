"""The milter's limits against a hostile peer, header block and connections, in-process: the config keys,
the header-block cap as the MTA sees it, the connection cap and its rate-limited log line."""

from __future__ import annotations

import asyncio
import io
import logging
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from reputable.config import Config, MilterConfig, OnError, SigningConfig, parse_config
from reputable.errors import ConfigError
from reputable.keys.commands import new_command
from reputable.log import record_fields
from reputable.milter import protocol as p
from reputable.milter.limits import (
    REFUSAL_LOG_INTERVAL_S,
    RESERVED_FDS,
    ConnectionCap,
    derived_max_connections,
)
from reputable.runtime import RuntimeHolder, load_runtime
from tests.unit.milter.test_connection import (
    Mta,
    body_and_end,
    connect,
    end_of_headers,
    engine,
    headers,
    mail,
    run,
)

FROM = ("From", b" Alice <alice@example.com>")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    config = Config(signing=SigningConfig(domains=("example.com",), keys=root))
    assert new_command(config, "example.com", "r1", "rsa", 2048, False, out=io.StringIO()) == 0
    return root


def holder_with(keys: Path, **milter: object) -> RuntimeHolder:
    signing = SigningConfig(domains=("example.com",), keys=keys)
    return RuntimeHolder(load_runtime(Config(milter=MilterConfig(**milter), signing=signing)))  # type: ignore[arg-type]


def message_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [record_fields(r) for r in caplog.records if "action" in record_fields(r)]


# --- the config keys ---


def test_the_limits_read_from_the_config() -> None:
    config = parse_config(
        {"milter": {"max_connections": 500, "max_header_bytes": "256KiB", "max_headers": 200}},
        "f.toml",
    )
    assert config.milter.max_connections == 500
    assert config.milter.max_header_bytes == 256 * 1024
    assert config.milter.max_headers == 200
    assert parse_config({"milter": {"max_header_bytes": 65536}}, "f").milter.max_header_bytes == (
        64 * 1024
    )
    assert parse_config({"milter": {"max_header_bytes": "2 MiB"}}, "f").milter.max_header_bytes == (
        2 << 20
    )
    assert Config().milter == MilterConfig(max_connections=0, max_header_bytes=1 << 20)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("max_connections", -1, "a whole number from 1 to 1000000, or 0 (derived from the fd"),
        ("max_connections", "100", "a whole number"),
        ("max_connections", True, "a whole number"),
        ("max_header_bytes", "1GiB", 'a size from "8KiB" to "64MiB"'),
        ("max_header_bytes", "1MB", 'a size from "8KiB" to "64MiB"'),
        ("max_header_bytes", 100, 'a size from "8KiB" to "64MiB"'),
        ("max_header_bytes", 1.5, 'a size from "8KiB" to "64MiB"'),
        ("max_headers", 0, "a whole number from 100 to 1000000"),
        ("max_headers", 10, "a whole number from 100 to 1000000"),
    ],
)
def test_a_bad_limit_is_refused_with_file_key_value_and_allowed(
    key: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"milter": {key: value}}, "/etc/reputable/reputable.toml")
    (problem,) = caught.value.problems
    assert (problem.source, problem.key) == ("/etc/reputable/reputable.toml", f"milter.{key}")
    assert problem.value
    assert problem.allowed.startswith("expected " + allowed)


# --- connections ---


def test_the_derived_cap_keeps_descriptors_for_lookups_and_files() -> None:
    assert derived_max_connections(1024) == 1024 - RESERVED_FDS
    assert derived_max_connections(65536) == 65536 - RESERVED_FDS
    assert derived_max_connections(256) == 128  # a small limit: half of it
    assert ConnectionCap(900).limit(0) == 900
    assert ConnectionCap(900).limit(50) == 50  # as configured, even above the derived one


def test_the_open_file_limit_is_raised_to_the_hard_one() -> None:
    code = (
        "import resource\n"
        "from reputable.milter.limits import raise_fd_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    returned, soft, hard = (int(n) for n in done.stdout.split())
    assert returned == soft
    assert soft == hard or (hard == resource.RLIM_INFINITY and soft > 256)


def test_refusals_are_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "reputable")
    now = [100.0]

    async def scenario() -> None:
        cap = ConnectionCap(2, clock=lambda: now[0])
        assert cap.admit(0, 0) and cap.admit(1, 0)
        assert not cap.admit(2, 0)  # the first refusal is logged at once
        for _ in range(50):
            assert not cap.admit(2, 0)
        now[0] += REFUSAL_LOG_INTERVAL_S
        cap.log_refused()  # what call_later does when the interval is over
        now[0] += 1
        assert not cap.admit(2, 0)  # within the next interval: counted, logged later
        assert cap.admit(1, 0)

    asyncio.run(scenario())
    lines = [record_fields(r) for r in caplog.records]
    assert [(line["event"], line["max_connections"], line["refused"]) for line in lines] == [
        ("connection_refused", 2, 1),
        ("connection_refused", 2, 50),
    ]


def test_a_connection_past_max_connections_is_closed_at_once(
    keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    holder = holder_with(keys, max_connections=3)

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            held = [await Mta.open(listener) for _ in range(3)]
            for mta in held:
                await mta.negotiate()
            extra = await Mta.open(listener)
            assert await asyncio.wait_for(extra.reader.read(), 5) == b""  # closed, unanswered
            await extra.close()
            await held.pop().close()
            # Room again: the next connection is served.
            again = await Mta.open(listener)
            await again.negotiate()
            for mta in [*held, again]:
                await mta.close()

    run(scenario())
    refused = [
        record_fields(r)
        for r in caplog.records
        if record_fields(r).get("event") == "connection_refused"
    ]
    assert [(line["max_connections"], line["refused"]) for line in refused] == [(3, 1)]


# --- the header block ---


async def through_headers(
    mta: Mta, fields: list[tuple[str, bytes]], queue_id: str
) -> list[tuple[bytes, bytes]]:
    await mta.negotiate()
    mta.send([connect(), *mail(), p.packet(b"T")])
    assert await mta.until_final() == [(b"c", b"")]
    mta.send([*headers(fields, queue_id), *end_of_headers(queue_id)])
    return await mta.until_final()


def test_a_header_block_over_max_header_bytes_is_tempfailed_and_never_signed(
    keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    holder = holder_with(keys, max_header_bytes=16 * 1024)
    big = [FROM, *[("X-Filler", b" " + b"x" * 1000)] * 20]  # about 20 KB

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            (reply,) = await through_headers(mta, big, "BIG1")
            assert reply == (b"y", reply[1])
            assert reply[1].startswith(b"451 4.3.4 reputable: message header refused: more than")
            # The connection goes on; a message within the limits is signed.
            mta.send([*mail(), p.packet(b"T"), *headers([FROM], "OK1"), *end_of_headers("OK1")])
            assert await mta.until_final() == [(b"c", b"")]
            assert await mta.until_final() == [(b"c", b"")]
            mta.send(body_and_end(queue_id="OK1"))
            assert [c for c, _ in await mta.until_final()] == [b"i", b"a"]
            await mta.close()

    run(scenario())
    first, second = message_lines(caplog)
    assert (first["queue_id"], first["action"], first["reason"]) == (
        "BIG1",
        "tempfail",
        "headers_too_large",
    )
    assert first["source"] == "internal" and first["dkim"] == "none"
    assert "16384 bytes of header fields" in str(first["detail"])
    assert (second["queue_id"], second["dkim"]) == ("OK1", "example.com/r1")


def test_too_many_header_fields_with_on_error_accept_go_on_unsigned(
    keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    holder = holder_with(keys, max_headers=100, on_error=OnError.ACCEPT)
    many = [FROM, *[("X-Tiny", b" y")] * 100]  # 101 fields in very few bytes

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            # Accepted at the end of headers: no signature, the body is not even asked for.
            assert await through_headers(mta, many, "MANY1") == [(b"a", b"")]
            await mta.close()

    run(scenario())
    (line,) = message_lines(caplog)
    assert (line["action"], line["reason"], line["dkim"]) == ("accept", "too_many_headers", "none")


def test_a_header_block_right_at_the_limits_is_signed(keys: Path) -> None:
    # name ":" value CRLF: 4 + 1 + 1000 + 2 bytes per field.
    fields = [FROM, *[("X-Ok", b" " + b"z" * 999)] * 98]
    size = sum(len(name) + len(value) + 3 for name, value in fields)
    holder = holder_with(keys, max_header_bytes=size, max_headers=len(fields))

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            assert await through_headers(mta, fields, "EDGE1") == [(b"c", b"")]
            mta.send(body_and_end(queue_id="EDGE1"))
            assert [c for c, _ in await mta.until_final()] == [b"i", b"a"]
            await mta.close()

    run(scenario())
