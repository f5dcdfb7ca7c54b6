"""Lookups that never end against the real daemon: messages from domains whose
name servers never answer delay no message from another domain, and the same lookup wanted
by many messages at once is asked once.

The test DNS server drops every query for the stuck names (`set_drop`); the
daemon asks it with [dns] timeout = "1s". The messages come from an internal
client, so the gate looks up SPF for the MAIL FROM domain and DMARC for the
From domain at the end of headers, on the lookup pool. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from reputable.milter import protocol as p
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.unit.milter.test_connection import Mta, connect, end_of_headers, headers, mail, run

pytestmark = pytest.mark.integration

SCENARIO_TIMEOUT_S = 120
STUCK = 64
PER_SITE = 4  # reputable.milter.lookups.PER_SITE: the threads one site may hold at once
FRESH = "fresh.example"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer([("127.0.0.1", 0)]) as server:
        server.set_txt(FRESH, "v=spf1 ip4:192.0.2.25 -all")
        server.set_txt(f"_dmarc.{FRESH}", "v=DMARC1; p=none")
        yield server


@pytest.fixture
def milter(dns: DnsServer, tmp_path: Path) -> Iterator[MilterDaemon]:
    keys = tmp_path / "keys"
    config = Config(signing=SigningConfig(domains=("example.com",), keys=keys))
    assert new_command(config, "example.com", "r1", "rsa", 2048, False, out=io.StringIO()) == 0
    daemon = MilterDaemon(tmp_path, keys, ["example.com"], dns.address)
    yield daemon.start()
    daemon.stop()


def stuck(dns: DnsServer, domains: list[str]) -> None:
    """Name servers that never answer: every query for these (and their DMARC) is dropped."""
    for domain in domains:
        dns.set_drop(domain)
        dns.set_drop(f"_dmarc.{domain}")


def unstuck(dns: DnsServer, domains: list[str]) -> None:
    for domain in domains:
        dns.set_drop(domain, False)
        dns.set_drop(f"_dmarc.{domain}", False)


async def up_to_headers(port: int, domain: str, queue_id: str) -> Mta:
    """A message from *domain* sent up to its end of headers; its answer not read yet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    mta = Mta(reader, writer)
    await mta.negotiate()
    mta.send([connect(), *mail(f"<a@{domain}>"), p.packet(b"T")])
    assert await mta.until_final() == [(b"c", b"")]
    mta.send([*headers([("From", f" a@{domain}".encode())], queue_id), *end_of_headers(queue_id)])
    return mta


async def answered_within(mta: Mta) -> float:
    started = time.monotonic()
    (reply,) = await mta.until_final()
    assert reply[0] in b"acty", reply  # monitor mode: accepted, whatever the lookups said
    return time.monotonic() - started


def threads_of(milter: MilterDaemon) -> int:
    """The daemon's threads, less libuv's own (its resolver pool, started when it likes)."""
    assert milter.process is not None
    tasks = Path(f"/proc/{milter.process.pid}/task")
    names = []
    for task in tasks.iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except FileNotFoundError:
            continue  # a thread that ended since the listing: not one of them any more
    return sum(name != "libuv-worker" for name in names)


def test_a_fresh_domain_does_not_wait_behind_64_stuck_ones(
    milter: MilterDaemon, dns: DnsServer
) -> None:
    """Before: 16 lookup threads in one queue; the fresh domain's message waited 8.4 s here
    (16.3 s measured with more queries per message)."""
    domains = [f"stuck{i}.example" for i in range(STUCK)]
    stuck(dns, domains)
    took: dict[str, float] = {}

    async def scenario() -> None:
        waiting = [await up_to_headers(milter.port, d, f"S{i}") for i, d in enumerate(domains)]
        await asyncio.sleep(0.3)  # every stuck lookup under way
        fresh = await up_to_headers(milter.port, FRESH, "FRESH1")
        took["fresh"] = await answered_within(fresh)
        # The stuck ones are each bounded by [dns] timeout per lookup: answered too, soon.
        took["stuck"] = max(await asyncio.gather(*(answered_within(m) for m in waiting)))
        for mta in [*waiting, fresh]:
            await mta.close()

    try:
        run(scenario(), SCENARIO_TIMEOUT_S)
    finally:
        unstuck(dns, domains)
    print(f"answered after: {took}")
    assert took["fresh"] < 2.0, took
    assert took["stuck"] < 15.0, took
    assert {line["queue_id"] for line in milter.message_lines()} >= {"FRESH1", "S0", "S63"}


def test_one_lookup_wanted_by_many_at_once_is_asked_once_and_a_flood_holds_few_threads(
    milter: MilterDaemon, dns: DnsServer
) -> None:
    """Before: 20 messages from one stuck domain at once sent its SPF and DMARC queries 16
    times each (one per lookup thread); 40 from names under one stuck domain took all 16
    threads."""
    same = "same.stuck.example"
    flood = [f"n{i}.flood.example" for i in range(40)]
    stuck(dns, [same, *flood])
    dns.clear_queries()
    counted: dict[str, float] = {}

    async def scenario() -> None:
        idle = threads_of(milter)
        waiting = [await up_to_headers(milter.port, same, f"SAME{i}") for i in range(20)]
        waiting += [await up_to_headers(milter.port, d, f"F{i}") for i, d in enumerate(flood)]
        await asyncio.sleep(0.5)
        counted["threads"] = threads_of(milter) - idle
        fresh = await up_to_headers(milter.port, FRESH, "FRESH2")
        counted["fresh"] = await answered_within(fresh)
        for mta in waiting[:20]:
            await answered_within(mta)
        for mta in [*waiting, fresh]:
            await mta.close()

    try:
        run(scenario(), SCENARIO_TIMEOUT_S)
    finally:
        unstuck(dns, [same, *flood])
    print(f"measured: {counted}")
    assert dns.query_count(same, "TXT") == 1
    assert dns.query_count(f"_dmarc.{same}", "TXT") == 1
    # One site each: same.stuck.example's and flood.example's, PER_SITE threads at most.
    assert counted["threads"] <= 2 * PER_SITE, counted
    assert counted["fresh"] < 2.0, counted


def arc_chain(domain: str, sets: int) -> list[tuple[str, bytes]]:
    """A well-formed ARC chain of *sets* sets, each sealed with a key of its own at *domain*.

    Nothing in it verifies; what matters is that a verifier must fetch 51 keys to find out.
    """
    fields: list[tuple[str, bytes]] = []
    for i in range(sets, 0, -1):
        cv = "none" if i == 1 else "pass"
        seal = f" i={i}; cv={cv}; a=rsa-sha256; d={domain}; s=seal{i}; t=1; b=AAAA"
        ams = f" i={i}; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=ams{i}; h=from; bh=AAAA; b=AAAA"
        fields += [
            ("ARC-Seal", seal.encode()),
            ("ARC-Message-Signature", ams.encode()),
            ("ARC-Authentication-Results", f" i={i}; mx.{domain}; none".encode()),
        ]
    return fields


def test_a_received_message_naming_56_keys_that_never_answer_holds_its_worker_3_timeouts(
    milter: MilterDaemon, dns: DnsServer
) -> None:
    """Five DKIM signatures and a 50-set ARC chain, every key at a name that never answers:
    the key lookups of the message share a budget of 3 x [dns] timeout (1 s here), the
    message is answered, and a message from elsewhere meanwhile does not wait for it."""
    bad = "keys.stuck.example"
    dkim = [
        ("DKIM-Signature", f" v=1; a=rsa-sha256; d={bad}; s=k{n}; h=from; bh=AAAA; b=AAAA".encode())
        for n in range(5)
    ]
    fields = [*dkim, *arc_chain(bad, 50), ("From", f" a@{bad}".encode())]
    names = [bad, *(f"k{n}._domainkey.{bad}" for n in range(5))]
    names += [f"{kind}{i}._domainkey.{bad}" for i in range(1, 51) for kind in ("seal", "ams")]
    for name in names:  # every key, and SPF of the MAIL FROM domain
        dns.set_drop(name)
    took: dict[str, float] = {}

    async def received(queue_id: str, sent: list[tuple[str, bytes]], sender: str) -> Mta:
        reader, writer = await asyncio.open_connection("127.0.0.1", milter.port)
        mta = Mta(reader, writer)
        await mta.negotiate()
        mta.send([connect("198.51.100.7"), *mail(f"<a@{sender}>"), p.packet(b"T")])
        assert await mta.until_final() == [(b"c", b"")]
        mta.send([*headers(sent, queue_id), *end_of_headers(queue_id)])
        return mta

    async def scenario() -> None:
        started = time.monotonic()
        hostile = await received("HOSTILE", fields, bad)
        await asyncio.sleep(0.3)
        fresh = await received("FRESH3", [("From", f" a@{FRESH}".encode())], FRESH)
        took["fresh"] = await answered_within(fresh)
        await answered_within(hostile)
        took["hostile"] = time.monotonic() - started
        for mta in (hostile, fresh):
            await mta.close()

    try:
        run(scenario(), SCENARIO_TIMEOUT_S)
    finally:
        for name in names:
            dns.set_drop(name, False)
    print(f"answered after: {took}")
    assert took["fresh"] < 2.0, took
    # Keys 3 s at most, then SPF and DMARC (1 s each) and what is left of the last key's wait.
    assert took["hostile"] < 7.0, took
