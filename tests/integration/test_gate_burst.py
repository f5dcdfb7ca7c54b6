"""No DNS on the per-message path for host facts: 1,000 messages through the milter's gate cost no
more lookups than the refresh schedule (plus one bounded lookup per first-seen SPF/DMARC domain).

The milter session runs in-process (pymilter's TestCtx) against the real DNS
server, whose query log counts every packet.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest

from reputable.config import Config, parse_config
from reputable.keys.commands import new_command
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from reputable.log import record_fields
from reputable.milter import protocol as p
from reputable.milter.session import Session
from reputable.reputation import Reputation
from reputable.runtime import RuntimeHolder, load_runtime
from tests.integration.harness.dnsserver import DnsServer
from tests.unit.milter.test_connection import (
    Mta,
    body_and_end,
    connect,
    end_of_headers,
    engine,
    headers,
    mail,
    run,
    until,
)
from tests.unit.milter.test_session import Ctx, run_message

DOMAIN = "burst.example.com"
IP = "203.0.113.9"
HELO = f"mail.{DOMAIN}"
MESSAGES = 1000


@pytest.fixture
def holder(dns_server: DnsServer, tmp_path: Path) -> Iterator[RuntimeHolder]:
    host, port = dns_server.address
    config: Config = parse_config(
        {
            "signing": {"domains": [DOMAIN], "keys": str(tmp_path / "keys")},
            "host": {"sending_ips": [IP], "helo_name": HELO},
            "checks": {"dnsbl": ["bl.example.test"], "refresh": "5m"},
            "dns": {"nameservers": [f"{host}:{port}"], "timeout": "1s"},
            "keys": {"verify_nameservers": [f"{host}:{port}"]},
        },
        "burst.toml",
    )
    assert new_command(config, DOMAIN, "b1", "rsa", 2048, False, out=io.StringIO()) == 0
    (stored,) = read_store(config.signing.keys).keys
    names = [
        HELO,
        DOMAIN,
        f"_dmarc.{DOMAIN}",
        record_name("b1", DOMAIN),
        "9.113.0.203.in-addr.arpa",
    ]
    dns_server.set_ptr(IP, HELO)
    dns_server.set_a(HELO, IP)
    dns_server.set_txt(DOMAIN, f"v=spf1 ip4:{IP} -all", ttl=3600)
    dns_server.set_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject", ttl=3600)
    dns_server.set_txt(
        record_name("b1", DOMAIN),
        *split_strings(record_value(stored.key.algorithm, stored.key.private_key)),
    )
    holder = RuntimeHolder(load_runtime(config))
    holder.reputation = Reputation(holder)
    Milter.factory = lambda: Session(holder)
    holder.reputation.start()
    deadline = time.monotonic() + 20
    while not holder.reputation.refresher.current.ready:
        assert time.monotonic() < deadline, "the first host refresh never finished"
        time.sleep(0.02)
    yield holder
    holder.reputation.stop()
    for name in names:
        dns_server.remove(name)


def test_a_burst_of_a_thousand_messages_adds_no_lookups(
    holder: RuntimeHolder, dns_server: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    dns_server.clear_queries()
    first = Ctx()
    headers = [("From", f" alice@{DOMAIN}".encode()), ("Subject", b" one")]
    run_message(first, headers=headers, mail_from=f"<alice@{DOMAIN}>")
    after_first = len(dns_server.queries)
    for _ in range(MESSAGES - 1):
        run_message(Ctx(), headers=headers, mail_from=f"<alice@{DOMAIN}>")
    after_all = len(dns_server.queries)
    lines = [record_fields(r) for r in caplog.records if "action" in record_fields(r)]
    assert len(lines) == MESSAGES
    assert {
        (str(line["action"]), str(line["spf"]), str(line["dnsbl"]), str(line["dmarc"]))
        for line in lines
    } == {("accept", "pass", "clean", "aligned")}
    # The first message asked for its MAIL FROM domain's SPF and its From domain's DMARC once;
    # the other 999 asked nothing: host facts come from the snapshot, the rest from the caches.
    assert 1 <= after_first <= 6, [(q.qname, q.qtype) for q in dns_server.queries]
    assert after_all == after_first
    print(
        f"DNS queries: {after_first} for the first message, {after_all - after_first} for the next {MESSAGES - 1}"
    )


def test_a_lookup_that_waits_for_dns_holds_up_only_its_own_connection(
    holder: RuntimeHolder, dns_server: DnsServer
) -> None:
    """The milter serves every connection on one thread; a cache miss waits on a worker."""
    slow = "slow.example.org"
    dns_server.set_drop(slow)
    own = [("From", f" alice@{DOMAIN}".encode()), ("Subject", b" hi")]

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            waiting, other = (
                await Mta.open(listener),
                await Mta.open(listener),
            )
            for mta in (waiting, other):
                await mta.negotiate()
            waiting.send([connect(), *mail(f"<bob@{slow}>"), p.packet(b"T")])
            assert await waiting.until_final() == [(b"c", b"")]
            waiting.send([*headers(own), *end_of_headers("SLOW1")])
            waiting_reply = asyncio.create_task(waiting.until_final())
            # Meanwhile a whole message goes through on the other connection.
            other.send([connect(), *mail(f"<alice@{DOMAIN}>"), p.packet(b"T")])
            await other.until_final()
            other.send([*headers(own), *end_of_headers("FAST1")])
            assert await other.until_final() == [(b"c", b"")]
            other.send(body_and_end(queue_id="FAST1"))
            assert [code for code, _ in await other.until_final()] == [b"i", b"a"]
            assert not waiting_reply.done()  # still waiting for slow.example.org's SPF
            # The lookup times out on its worker; the message is then judged and answered.
            (reply,) = await waiting_reply
            assert reply[0] in b"cty"
            for mta in (waiting, other):
                await mta.close()

    try:
        run(scenario(), 30)
    finally:
        dns_server.set_drop(slow, False)


def test_an_mta_that_leaves_during_a_lookup_ends_the_session_cleanly(
    holder: RuntimeHolder, dns_server: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    slow = "gone.example.org"
    dns_server.set_drop(slow)
    own = [("From", f" alice@{DOMAIN}".encode()), ("Subject", b" hi")]

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            mta.send([connect(), *mail(f"<bob@{slow}>"), p.packet(b"T")])
            await mta.until_final()
            mta.send([*headers(own), *end_of_headers("GONE1")])
            await until(lambda: any(c.waiting for c in listener.connections))
            await mta.close()  # while the SPF lookup waits on its worker
            assert holder.sessions == 1  # the worker still holds the session
            # Not read while its lookup waits (backpressure), the connection sees the MTA
            # gone once the lookup is over ([dns] timeout 1 s), and ends the session then.
            await until(lambda: not listener.connections and holder.sessions == 0)

    try:
        run(scenario(), 30)
    finally:
        dns_server.set_drop(slow, False)
    errors = [record_fields(r) for r in caplog.records if record_fields(r).get("event") == "error"]
    assert errors == []
