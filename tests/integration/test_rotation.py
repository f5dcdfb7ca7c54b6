"""A full key rotation with mail flowing through a real Postfix, every message verified.

The domain's zone lives in a real knotd that accepts TSIG-signed RFC 2136
updates; the session DNS server delegates the zone to it (so `keys activate`
and the milter find the authoritative server through NS records) and stands
for the receivers' resolvers, which see what knotd publishes (mirrored).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reputable.keys.publish import load_tsig_key, publish_txt
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.knot import KnotServer
from tests.integration.harness.postfix import PostfixInstance
from tests.integration.harness.sink import ReceivedMessage, SmtpSink
from tests.integration.harness.verifiers import verify_all

DOMAIN = "rotation.example.org"
# From s1's switch to retiring, the test checks the state, sends and verifies
# three messages before it tries to retire s1 too early: about 3.5 s on a busy
# two-CPU machine, so a grace of 3 s could be over by then.
GRACE_S = 10


def keys_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`reputable keys ARGS --config CONFIG`, as an admin runs it."""
    return subprocess.run(
        [sys.executable, "-m", "reputable", "keys", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Rotation:
    dns: DnsServer
    knot: KnotServer
    milter: MilterDaemon
    postfix: PostfixInstance
    sink: SmtpSink
    config: Path
    received: dict[str, list[ReceivedMessage]] = field(default_factory=dict)

    def keys(self, *args: str) -> subprocess.CompletedProcess[str]:
        return keys_cli(self.config, *args)

    def mirror(self, selector: str) -> None:
        """What knotd serves for the selector becomes what the receivers' resolvers see."""
        name = record_name(selector, DOMAIN)
        strings = self.knot.txt_strings(name)
        if strings:
            self.dns.set_txt(name, *strings[0])
        else:
            self.dns.remove(name, "TXT")

    def send(self, phase: str, count: int = 3) -> list[ReceivedMessage]:
        got = []
        for _ in range(count):
            message_id = f"{uuid.uuid4().hex}@{DOMAIN}"
            data = (
                f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@example.test\r\nSubject: {phase}\r\n"
                f"Message-ID: <{message_id}>\r\n\r\nMail sent {phase} the rotation.\r\n"
            ).encode()
            self.postfix.submit_smtp(data, f"alice@{DOMAIN}", ["bob@example.test"])
            got.append(self.sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60))
        self.received.setdefault(phase, []).extend(got)
        return got

    def assert_verified(self, messages: list[ReceivedMessage], selector: str) -> None:
        for received in messages:
            results = verify_all(received.data, self.dns)
            for result in results.values():
                print(result)  # shown by pytest -rP
                assert result.passed, f"{result}\n{result.output}"
                assert [r.selector for r in result.results] == [selector]

    def state(self, selector: str) -> dict[str, object]:
        listing = self.keys("list", DOMAIN, "--json")
        assert listing.returncode == 0, listing.stderr
        rows = json.loads(listing.stdout)["keys"]
        return next(row for row in rows if row["selector"] == selector)

    def wait_for_state(self, selector: str, state: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state(selector)["state"] == state:
                return
            time.sleep(0.2)
        raise AssertionError(f"{selector} never became {state}: {self.state(selector)}")


@pytest.fixture
def rotation(dns_server: DnsServer, tmp_path: Path) -> Iterator[Rotation]:
    with KnotServer(DOMAIN) as knot, SmtpSink() as sink:
        dns_server.set_records(DOMAIN, "SOA", [knot.soa_text])
        dns_server.set_records(DOMAIN, "NS", [f"{knot.ns_name}."])
        dns_server.set_a(knot.ns_name, knot.host)
        keys_dir = tmp_path / "keys"
        milter = MilterDaemon(tmp_path, keys_dir, [DOMAIN], dns_server.address)
        milter.extra = (
            "[keys]\n"
            f'grace = "{GRACE_S}s"\n'
            'check_interval = "1s"\n'
            "[keys.publish]\n"
            f'server = "{knot.host}:53"\n'
            f'tsig_key_file = "{knot.key_file}"\n'
        )
        milter.write_config()
        created = keys_cli(milter.config_path, "new", DOMAIN, "--selector", "s1")
        assert created.returncode == 0, created.stderr
        (first,) = read_store(keys_dir).keys
        value = record_value(first.key.algorithm, first.key.private_key)
        name = record_name("s1", DOMAIN)
        publish_txt(knot.nameserver, name, split_strings(value), 300, load_tsig_key(knot.key_file))
        dns_server.set_txt(name, *split_strings(value))
        milter.start()
        postfix = PostfixInstance(sink.address, milter=milter.postfix_socket).start()
        world = Rotation(dns_server, knot, milter, postfix, sink, milter.config_path)
        try:
            yield world
        finally:
            world.postfix.stop()
            milter.stop()
            for name in (DOMAIN, knot.ns_name):
                dns_server.remove(name)
            for selector in {
                str(r["selector"])
                for r in json.loads(world.keys("list", "--json", "--no-dns").stdout)["keys"]
            }:
                dns_server.remove(record_name(selector, DOMAIN))


def test_full_rotation_with_mail_flowing(rotation: Rotation) -> None:
    r = rotation
    r.assert_verified(r.send("before"), "s1")

    # A rotation whose record is never published: the old key keeps signing.
    rotated = r.keys("rotate", DOMAIN)
    assert rotated.returncode == 0, rotated.stderr
    unpublished = next(
        row["selector"]
        for row in json.loads(r.keys("list", "--json", "--no-dns").stdout)["keys"]
        if row["state"] == "pending"
    )
    r.milter.wait_for_event("key_pending", count=2)  # two checks by the milter, both refused
    pending = r.state(str(unpublished))
    assert pending["state"] == "pending"
    assert pending["dns"] == "missing"
    assert "publish its record" in str(pending["next"])
    activate = r.keys("activate", DOMAIN)
    assert activate.returncode == 1
    assert "stays pending" in activate.stdout
    r.assert_verified(r.send("during"), "s1")
    abandoned = r.keys("retire", DOMAIN, str(unpublished))
    assert abandoned.returncode == 0, abandoned.stdout

    # The real rotation: published by RFC 2136, activated by the milter on proof.
    rotated = r.keys("rotate", DOMAIN, "--publish")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "by RFC 2136 update" in rotated.stdout
    # Named from rotate's own words: the milter may activate the key (knotd already serves
    # it) before a `keys list` could see it pending.
    created = re.search(r"Created pending key \S*/([^/\s]+)\.pem", rotated.stdout)
    assert created is not None, rotated.stdout
    new = created[1]
    assert new != unpublished
    r.mirror(str(new))
    r.wait_for_state(str(new), "active")
    assert r.state("s1")["state"] == "retiring"
    r.milter.wait_for_event("keys_reloaded")
    during = r.received["during"]
    r.assert_verified(r.send("after"), str(new))
    r.assert_verified(
        during, "s1"
    )  # mail signed before the switch still verifies: s1's record stays

    # The grace period: retiring too early is refused; afterwards the record goes.
    early = r.keys("retire", DOMAIN, "s1", "--publish")
    assert early.returncode == 1
    assert "grace period" in early.stdout
    retiring = datetime.fromisoformat(str(r.state("s1")["changed"]))
    time.sleep(
        max(0.0, (retiring + timedelta(seconds=GRACE_S) - datetime.now(UTC)).total_seconds())
    )
    assert "may be removed now" in str(r.state("s1")["next"])
    retired = r.keys("retire", DOMAIN, "s1", "--publish")
    assert retired.returncode == 0, retired.stdout + retired.stderr
    assert r.knot.txt_strings(record_name("s1", DOMAIN)) == []
    r.mirror("s1")
    assert r.state("s1")["state"] == "retired"
    r.assert_verified(r.send("after retirement"), str(new))
    counts = {phase: len(messages) for phase, messages in r.received.items()}
    print(f"messages per phase: {counts}")
    assert sum(counts.values()) == 12
