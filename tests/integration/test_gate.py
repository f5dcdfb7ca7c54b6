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
from cryptography.hazmat.primitives.asymmetric import rsa

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from reputable.signing.algorithm import Algorithm
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
    world: DnsServer,
    keys_dir: Path,
    workdir: Path,
    sink: SmtpSink,
    actions: str,
    mode: str,
    dnsbl: str = f'["{ZONE}"]',
) -> Gate:
    host, port = world.address
    milter = MilterDaemon(
        workdir, keys_dir, [DOMAIN], world.address, mode=mode, sending_ips=[IP], helo_name=HELO
    )
    milter.extra = (
        f"[checks]\ndnsbl = {dnsbl}\n"
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

    def start(actions: str = "", mode: str = "enforce", dnsbl: str = f'["{ZONE}"]') -> Gate:
        gate = start_gate(world, keys_dir, tmp_path, smtp_sink, actions, mode, dnsbl)
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
    assert received.header("X-Reputable-Warning") == "spf"  # the kind only: no IP, no words
    line = gate.line()
    assert (line["action"], line["spf"]) == ("flag", "softfail")
    assert line["detail"].startswith(f"spf.{DOMAIN}.{IP}: ")  # the detail stays in our log
    for result in verify_all(received.data, gate.dns).values():
        assert result.passed, result  # the header is added after signing and not signed


def test_dmarc_does_not_align_by_a_signature_whose_record_is_another_key(
    world: DnsServer, gate_factory: GateFactory
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    world.set_txt(
        record_name("g1", DOMAIN), *split_strings(record_value(Algorithm.RSA_SHA256, other))
    )
    world.set_txt(DOMAIN, "v=spf1 ip4:198.51.100.1 -all")
    # Only DMARC acts here, so that its own verdict is what the line shows.
    gate = gate_factory('spf_fail = "accept"\ndkim_record = "accept"')
    message_id, _ = gate.send()
    gate.received(message_id)
    line = gate.line()
    assert (line["spf"], line["action"], line["dmarc"]) == ("fail", "flag", "unaligned")
    assert f"dmarc.{DOMAIN}" in line["checks"]


def warning_lines(received: ReceivedMessage) -> list[bytes]:
    """The X-Reputable-Warning field as it arrived: its first line and continuation lines."""
    lines = received.header_bytes.split(b"\r\n")
    start = next(i for i, x in enumerate(lines) if x.lower().startswith(b"x-reputable-warning:"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i][:1] not in (b" ", b"\t"))
    return lines[start:end]


def test_the_flag_header_names_only_the_failed_kinds_and_the_log_keeps_the_detail(
    world: DnsServer, gate_factory: GateFactory
) -> None:
    """A listed IP, a PTR lookup that fails, an SPF softfail: each only flags."""
    list_ip(world)
    world.set_txt(DOMAIN, "v=spf1 ip4:198.51.100.1 ~all")
    reverse = "7.113.0.203.in-addr.arpa"
    world.set_rcode(reverse, "SERVFAIL")
    try:
        gate = gate_factory('dnsbl = "flag"\nptr = "flag"\ndns_error = "flag"')
        message_id, _ = gate.send()
        received = gate.received(message_id)
    finally:
        world.set_rcode(reverse, None)
    line = gate.line()
    assert (line["action"], line["ptr"], line["dnsbl"], line["spf"]) == (
        "flag",
        "error",
        "listed",
        "softfail",
    )
    value = received.header("X-Reputable-Warning") or ""
    assert sorted(kind.strip() for kind in value.split(",")) == ["dnsbl", "ptr", "spf"]
    raw = warning_lines(received)
    assert all(len(x) <= 78 for x in raw), raw  # RFC 5322 2.1.1
    said = b"\r\n".join(raw).decode()
    for secret in (IP, "127.0.0.2", ZONE, "SERVFAIL", "listed for testing", "fix"):
        assert secret not in said
    # What recipients are not told, our log line says.
    for detail in (f"ptr.{IP}: ", f"dnsbl.{ZONE}.{IP}: ", f"spf.{DOMAIN}.{IP}: ", "127.0.0.2"):
        assert detail in line["detail"]
    for result in verify_all(received.data, gate.dns).values():
        assert result.passed, result


def test_monitor_mode_only_logs_what_it_would_do(
    world: DnsServer, gate_factory: GateFactory
) -> None:
    list_ip(world)
    gate = gate_factory('dnsbl = "reject"', mode="monitor")
    message_id, _ = gate.send()
    gate.received(message_id)
    line = gate.line()
    assert (line["action"], line["would_be"]) == ("accept", "reject")


DQS_KEY = "abcdefghijklmnopqrstuvwxyz"
DQS = f"{DQS_KEY}.zen.dq.spamhaus.net"
DQS_SHOWN = "<key>.zen.dq.spamhaus.net"  # the key is a secret: never in ids or logs
MIRROR = "zen.mirror.example.net"  # a local copy of ZEN under a name of its own


def test_spamhaus_codes_are_read_on_a_dqs_zone_and_on_a_mirror_given_its_kind(
    world: DnsServer, gate_factory: GateFactory
) -> None:
    dqs, mirror = f"7.113.0.203.{DQS}", f"7.113.0.203.{MIRROR}"
    world.set_a(dqs, "127.255.255.254")  # an error of the list: never a listing
    world.set_a(mirror, "127.0.0.11")  # PBL: dynamic/end-user space
    try:
        gate = gate_factory(
            'dnsbl = "reject"',
            dnsbl=f'["{DQS}", {{ zone = "{MIRROR}", kind = "spamhaus-zen" }}]',
        )
        with pytest.raises(SmtpSubmitError) as refused:
            gate.send()
    finally:
        world.remove(dqs)
        world.remove(mirror)
    assert refused.value.code == 550
    assert "dynamic/end-user address space" in refused.value.message
    assert "Policy Block List" in refused.value.message
    line = gate.line()
    assert line["action"] == "reject"
    assert f"dnsbl.{MIRROR}.{IP}" in line["checks"]
    assert f"dnsbl.{DQS_SHOWN}.{IP}" in line["checks"]  # logged (dns_error = accept), not acted on
    errors = [
        entry
        for entry in gate.milter.lines()
        if entry.get("event") == "host_warn" and entry.get("check") == f"dnsbl.{DQS_SHOWN}.{IP}"
    ]
    assert errors and "not a listing" in errors[0]["detail"]
    assert not [entry for entry in gate.milter.lines() if DQS_KEY in str(entry)]


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


# --- a resolver that cannot see the internet's DNS ---

DNSPYTHON_WORDS = ("There is no SOA RR", "The DNS query name does not exist", "All nameservers")


def host_events(milter: MilterDaemon) -> list[tuple[str, str]]:
    return [
        (entry["event"], entry["check"])
        for entry in milter.lines()
        if entry.get("event", "").startswith("host_") and "check" in entry
    ]


def test_a_resolver_that_denies_the_root_makes_the_host_checks_dns_errors(
    keys_dir: Path, tmp_path: Path, smtp_sink: SmtpSink, nxdomain_dns: DnsServer
) -> None:
    milter = MilterDaemon(
        tmp_path, keys_dir, [DOMAIN], nxdomain_dns.address, sending_ips=[IP], helo_name=HELO
    )
    milter.mode = "enforce"
    # No [keys] verify_nameservers: the key record is found through the resolver too.
    milter.extra = f'[checks]\ndnsbl = ["{ZONE}"]\nrefresh = "1s"\n[actions]\ndns_error = "flag"\n'
    milter.start()
    postfix: PostfixInstance | None = None
    try:
        milter.wait_for_event("host_refreshed", count=3)  # the same state, refreshed again
        postfix = PostfixInstance(smtp_sink.address, milter=milter.postfix_socket).start()
        gate = Gate(nxdomain_dns, milter, postfix, smtp_sink)
        message_id, _ = gate.send()
        received = gate.received(message_id)
        line = gate.line()
        # Not "no PTR" and "not listed": nothing that resolver said is known.
        assert (line["action"], line["ptr"], line["dnsbl"], line["dmarc"], line["spf"]) == (
            "flag",
            "error",
            "error",
            "error",
            "temperror",
        )
        assert line["checks"].split(",")[0] == "dns"
        assert received.header("X-Reputable-Warning") is not None
        assert not [w for w in DNSPYTHON_WORDS if w in line["detail"]], line["detail"]
        # Said once, with why; the rows resting on it are not logged one by one.
        assert host_events(milter) == [("host_fail", "dns")]
        (failed,) = [e for e in milter.lines() if e.get("event") == "host_fail"]
        assert "says the DNS root does not exist (NXDOMAIN)" in failed["detail"]
        assert failed["fix"]

        # The resolver sees the root again, and this host's records: said once more.
        nxdomain_dns.set_ptr(IP, HELO)
        nxdomain_dns.set_a(HELO, IP)
        nxdomain_dns.set_txt(DOMAIN, f"v=spf1 ip4:{IP} -all")
        nxdomain_dns.set_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject")
        nxdomain_dns.set_records(".", "NS", ["a.root-servers.test."])
        milter.wait_for_event("host_ok")
        assert host_events(milter)[:2] == [("host_fail", "dns"), ("host_ok", "dns")]
        gate.send()
        line = gate.line(2)
        # SPF and DMARC are asked again, not taken from what the resolver said before.
        assert (line["ptr"], line["dnsbl"], line["spf"], line["dmarc"]) == (
            "ok",
            "clean",
            "pass",
            "aligned",
        )
        assert "dns" not in (line.get("checks") or "").split(",")
    finally:
        if postfix is not None:
            postfix.stop()
        milter.stop()
