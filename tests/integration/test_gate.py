"""The reputation gate through a real Postfix: held mail is in the hold queue, refused mail gets
the 5xx at the SMTP client, tempfailed mail a 4xx, flagged mail arrives with the header.

The host's world is served by the session DNS server: sending IP 203.0.113.7
with a forward-confirmed PTR, SPF, DMARC p=reject, the DKIM key record, and a
test blocklist `bl.example.test` that lists the IP when a test says so.
"""

from __future__ import annotations

import io
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix import PostfixInstance, SmtpSubmitError
from tests.integration.harness.sink import ReceivedMessage, SmtpSink
from tests.integration.harness.verifiers import verify_all

DOMAIN = "gate.example.com"
IP = "203.0.113.7"
HELO = f"mail.{DOMAIN}"
ZONE = "bl.example.test"
LISTING = f"7.113.0.203.{ZONE}"
GateFactory = Callable[..., "Gate"]


@dataclass
class Gate:
    dns: DnsServer
    milter: MilterDaemon
    postfix: PostfixInstance
    sink: SmtpSink

    def send(self, subject: str = "report") -> tuple[str, bytes]:
        message_id = f"{uuid.uuid4().hex}@{DOMAIN}"
        data = (
            f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\n\r\nThe report.\r\n"
        ).encode()
        self.postfix.submit_smtp(data, f"alice@{DOMAIN}", ["bob@example.test"])
        return message_id, data

    def line(self, count: int = 1) -> dict[str, str]:
        return self.milter.wait_for_messages(count)[-1]

    def received(self, message_id: str) -> ReceivedMessage:
        return self.sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=30)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gate-keys")
    config = Config(signing=SigningConfig(domains=(DOMAIN,), keys=root))
    assert new_command(config, DOMAIN, "g1", "rsa", 2048, False, out=io.StringIO()) == 0
    return root


@pytest.fixture
def world(dns_server: DnsServer, keys_dir: Path) -> Iterator[DnsServer]:
    """A host in good standing: PTR, FCrDNS, SPF, DMARC, DKIM record, MX; not listed."""
    (stored,) = read_store(keys_dir).keys
    value = record_value(stored.key.algorithm, stored.key.private_key)
    dns_server.set_ptr(IP, HELO)
    dns_server.set_a(HELO, IP)
    dns_server.set_mx(DOMAIN, (10, HELO))
    dns_server.set_txt(DOMAIN, f"v=spf1 ip4:{IP} -all")
    dns_server.set_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject")
    dns_server.set_txt(record_name("g1", DOMAIN), *split_strings(value))
    yield dns_server
    for name in (
        HELO,
        DOMAIN,
        f"_dmarc.{DOMAIN}",
        record_name("g1", DOMAIN),
        LISTING,
        "7.113.0.203.in-addr.arpa",
    ):
        dns_server.remove(name)


def start_gate(
    world: DnsServer, keys_dir: Path, workdir: Path, sink: SmtpSink, actions: str, mode: str
) -> Gate:
    host, port = world.address
    milter = MilterDaemon(
        workdir, keys_dir, [DOMAIN], world.address, mode=mode, sending_ips=[IP], helo_name=HELO
    )
    milter.extra = (
        f'[checks]\ndnsbl = ["{ZONE}"]\n'
        f'[keys]\nverify_nameservers = ["{host}:{port}"]\n'
        f"[actions]\n{actions}\n"
    )
    milter.start()
    milter.wait_for_event("host_refreshed")
    postfix = PostfixInstance(sink.address, milter=milter.postfix_socket).start()
    return Gate(world, milter, postfix, sink)


@pytest.fixture
def gate_factory(
    world: DnsServer, keys_dir: Path, tmp_path: Path, smtp_sink: SmtpSink
) -> Iterator[object]:
    started: list[Gate] = []

    def start(actions: str = "", mode: str = "enforce") -> Gate:
        gate = start_gate(world, keys_dir, tmp_path, smtp_sink, actions, mode)
        started.append(gate)
        return gate

    yield start
    for gate in started:
        gate.postfix.stop()
        gate.milter.stop()


def list_ip(dns: DnsServer) -> None:
    dns.set_a(LISTING, "127.0.0.2")
    dns.set_txt(LISTING, "listed for testing: https://bl.example.test/lookup")


def test_host_in_good_standing_sends_signed_mail(gate_factory: GateFactory) -> None:
    gate = gate_factory()
    message_id, _ = gate.send()
    received = gate.received(message_id)
    line = gate.line()
    assert (line["action"], line["spf"], line["ptr"], line["dnsbl"], line["dmarc"]) == (
        "accept",
        "pass",
        "ok",
        "clean",
        "aligned",
    )
    assert received.header("X-Reputable-Warning") is None
    for result in verify_all(received.data, gate.dns).values():
        assert result.passed, result


def test_listed_ip_is_held_in_the_hold_queue_and_released_signed(
    world: DnsServer, gate_factory: GateFactory
) -> None:
    list_ip(world)
    gate = gate_factory()
    message_id, _ = gate.send()
    line = gate.line()
    assert line["action"] == "hold"
    assert line["dnsbl"] == "listed"
    assert f"dnsbl.{ZONE}.{IP}" in line["checks"]
    held = gate.postfix.queue()
    assert [entry.queue_name for entry in held] == ["hold"]
    assert gate.sink.find("Message-ID", f"<{message_id}>") is None
    assert "milter triggers HOLD action" in gate.postfix.log_text()
    released = subprocess.run(
        ["/usr/sbin/postsuper", "-c", str(gate.postfix.config_dir), "-H", "ALL"],
        capture_output=True,
        check=False,
    )
    assert released.returncode == 0
    gate.postfix.flush()
    received = gate.received(message_id)
    for result in verify_all(received.data, gate.dns).values():
        assert result.passed, result


def test_listed_ip_refused_with_a_5xx_naming_the_list_and_the_fix(
    world: DnsServer, gate_factory: GateFactory
) -> None:
    list_ip(world)
    gate = gate_factory('dnsbl = "reject"')
    with pytest.raises(SmtpSubmitError) as refused:
        gate.send()
    assert refused.value.code == 550
    assert f"sending IP {IP} is listed on {ZONE}" in refused.value.message
    assert "fix:" in refused.value.message
    assert gate.line()["action"] == "reject"


def test_listed_ip_tempfailed_with_a_4xx(world: DnsServer, gate_factory: GateFactory) -> None:
    list_ip(world)
    gate = gate_factory('dnsbl = "tempfail"')
    with pytest.raises(SmtpSubmitError) as deferred:
        gate.send()
    assert deferred.value.code == 451
    assert ZONE in deferred.value.message


def test_spf_softfail_is_flagged_with_a_header(world: DnsServer, gate_factory: GateFactory) -> None:
    world.set_txt(DOMAIN, "v=spf1 ip4:198.51.100.1 ~all")
    gate = gate_factory()
    message_id, _ = gate.send()
    received = gate.received(message_id)
    warning = received.header("X-Reputable-Warning") or ""
    assert f"spf.{DOMAIN}.{IP}" in warning
    line = gate.line()
    assert (line["action"], line["spf"]) == ("flag", "softfail")
    for result in verify_all(received.data, gate.dns).values():
        assert result.passed, result  # the header is added after signing and not signed


def test_monitor_mode_only_logs_what_it_would_do(
    world: DnsServer, gate_factory: GateFactory
) -> None:
    list_ip(world)
    gate = gate_factory('dnsbl = "reject"', mode="monitor")
    message_id, _ = gate.send()
    gate.received(message_id)
    line = gate.line()
    assert (line["action"], line["would_be"]) == ("accept", "reject")


def test_public_resolver_answer_is_not_a_listing(
    world: DnsServer, gate_factory: GateFactory
) -> None:
    world.set_a(LISTING, "127.255.255.254")
    gate = gate_factory('dnsbl = "reject"')
    message_id, _ = gate.send()
    gate.received(message_id)
    line = gate.line()
    assert line["action"] == "accept"
    assert line["dnsbl"] == "error"
