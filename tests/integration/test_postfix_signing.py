"""The signing milter end to end: real Postfix, real DNS, three independent verifiers.

One Postfix instance and one `reputable milter` process serve the module;
every relayed message is checked by Mail::DKIM (RSA only: Debian's build does
not verify Ed25519), OpenDKIM and dkimpy, each asking our DNS server for the
keys.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix import PostfixInstance
from tests.integration.harness.sink import ReceivedMessage, SmtpSink
from tests.integration.harness.verifiers import VerifierResult, verify_all

# example.com: RSA + Ed25519 (dual); example.net: Ed25519 only; example.org: RSA only;
# example.edu is a signing domain without any key.
KEYS = {"example.com": ("rsa", "ed25519"), "example.net": ("ed25519",), "example.org": ("rsa",)}
DOMAINS = [*KEYS, "example.edu"]


@dataclass
class World:
    dns: DnsServer
    sink: SmtpSink
    milter: MilterDaemon
    postfix: PostfixInstance

    def send(
        self, message: bytes, source_ip: str = "127.0.0.1", mail_from: str = "alice@example.com"
    ) -> None:
        self.postfix.submit_smtp(message, mail_from, ["bob@example.test"], source_ip=source_ip)

    def received(self, message_id: str) -> ReceivedMessage:
        return self.sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60)

    def log_for(self, queue_id: str) -> dict[str, str]:
        for line in self.milter.message_lines():
            if line.get("queue_id") == queue_id:
                return line
        raise KeyError(queue_id)


def publish_keys(keys: Path, dns: DnsServer) -> None:
    for stored in read_store(keys).keys:
        key = stored.key
        value = record_value(key.algorithm, key.private_key)
        dns.set_txt(record_name(key.selector, key.domain), *split_strings(value))


@pytest.fixture(scope="module")
def world(dns_server: DnsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    keys = tmp_path_factory.mktemp("keys")
    config = Config(signing=SigningConfig(domains=tuple(DOMAINS), keys=keys))
    for domain, algorithms in KEYS.items():
        for algorithm in algorithms:
            selector = f"{algorithm[:3]}1"
            assert (
                new_command(config, domain, selector, algorithm, 2048, False, out=io.StringIO())
                == 0
            )
    publish_keys(keys, dns_server)
    milter = MilterDaemon(
        tmp_path_factory.mktemp("milter"),
        keys,
        DOMAINS,
        dns_server.address,
        algorithms=["rsa-sha256", "ed25519-sha256"],
    ).start()
    with SmtpSink() as sink:
        postfix = PostfixInstance(sink.address, milter=milter.postfix_socket).start()
        try:
            yield World(dns_server, sink, milter, postfix)
        finally:
            postfix.stop()
            milter.stop()


def message(
    from_: bytes = b"Alice <alice@example.com>",
    body: bytes = b"Hello Bob,\r\n\r\nthe report is attached.\r\n",
    extra_headers: bytes = b"",
    eol: bytes = b"\r\n",
) -> tuple[str, bytes]:
    message_id = f"{uuid.uuid4().hex}@example.com"
    head = (
        b"From: " + from_ + b"\r\n"
        b"To: Bob <bob@example.test>\r\n"
        b"Subject: quarterly report\r\n"
        b"Date: Fri, 27 Nov 2026 05:00:00 +0000\r\n"
        b"Message-ID: <" + message_id.encode() + b">\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n" + extra_headers
    )
    return message_id, (head + b"\r\n" + body).replace(b"\r\n", eol)


def assert_signed(
    world: World, received: ReceivedMessage, selectors: set[str]
) -> dict[str, VerifierResult]:
    """Every verifier passes every signature, and the signatures are the expected ones."""
    results = verify_all(received.data, world.dns)
    for name, result in results.items():
        if name == "mail-dkim":
            if not any(s.startswith("rsa") for s in selectors):
                continue
            result = result.only("rsa")
        assert result.passed, f"{result}\n{result.output}"
    for result in results.values():
        print(result)  # the verifiers' own words, shown by `pytest -rP`
    signed = {r.selector for r in results["dkimpy"].results}
    assert signed == selectors
    header_end = received.data.index(b"\r\n\r\n")
    tampered_header = received.data.replace(b"quarterly report", b"quarterly rep0rt", 1)
    tampered_body = received.data[:header_end] + b"\r\n\r\nX" + received.data[header_end + 4 :]
    for tampered in (tampered_header, tampered_body):
        for name, result in verify_all(tampered, world.dns).items():
            assert not result.passed, f"tampered copy passed {name}: {result}"
    return results


def queue_id_of(received: ReceivedMessage) -> str:
    # Postfix's Received: header ends with "... id QUEUEID for <rcpt>; date".
    text = received.header("Received") or ""
    return text.split(" id ", 1)[1].split()[0].rstrip(";")


CASES: dict[str, tuple[dict[str, bytes], set[str]]] = {
    "plain ascii, dual-signed": ({}, {"rsa1", "ed21"}),
    "ed25519 only": ({"from_": b"carol@example.net"}, {"ed21"}),
    "rsa only": ({"from_": b"dave@example.org"}, {"rsa1"}),
    "8-bit utf-8 headers and body": (
        {
            "from_": "Zoë Ångström <zoe@example.com>".encode(),
            "extra_headers": "X-Note: naïve café — résumé\r\n".encode(),
            "body": "Grüße, Zoë\r\n日本語のテキスト\r\n".encode(),
        },
        {"rsa1", "ed21"},
    ),
    "long folded headers": (
        {
            "extra_headers": b"References: "
            + b"\r\n ".join(f"<{i}.{'x' * 40}@example.com>".encode() for i in range(40))
            + b"\r\nX-Long: "
            + b"word " * 400
            + b"\r\n"
        },
        {"rsa1", "ed21"},
    ),
    "lone lf line endings": ({"eol": b"\n"}, {"rsa1", "ed21"}),
    "no final newline": ({"body": b"the report is attached, no newline"}, {"rsa1", "ed21"}),
    "empty body": ({"body": b""}, {"rsa1", "ed21"}),
    "trailing blank lines and spaces": (
        {"body": b"report  \t\r\n\r\n\r\n  \r\n\r\n"},
        {"rsa1", "ed21"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_signed_message_verifies_everywhere(world: World, case: str) -> None:
    kwargs, selectors = CASES[case]
    message_id, data = message(**kwargs)
    world.send(data, mail_from="alice@example.com")
    received = world.received(message_id)
    assert_signed(world, received, selectors)
    line = world.log_for(queue_id_of(received))
    assert line["action"] == "accept"
    assert line["source"] == "internal"
    assert "reason" not in line


def test_twenty_megabyte_attachment(world: World) -> None:
    import base64
    import os

    payload = base64.encodebytes(os.urandom(15 * 1024 * 1024)).replace(b"\n", b"\r\n")
    body = (
        b"--b1\r\nContent-Type: text/plain\r\n\r\nthe report is attached\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + payload + b"--b1--\r\n"
    )
    message_id, data = message(body=body, extra_headers=b"")
    data = data.replace(b"text/plain; charset=utf-8", b'multipart/mixed; boundary="b1"', 1)
    assert len(data) > 20 * 1000 * 1000
    world.send(data)
    received = world.received(message_id)
    assert_signed(world, received, {"rsa1", "ed21"})


def test_sendmail_submission_is_signed(world: World) -> None:
    message_id, data = message(eol=b"\n")
    world.postfix.submit_sendmail(data, "alice@example.com", ["bob@example.test"])
    received = world.received(message_id)
    assert_signed(world, received, {"rsa1", "ed21"})
    assert world.log_for(queue_id_of(received))["source"] == "local"


@pytest.mark.parametrize(
    ("case", "from_", "source_ip", "reason"),
    [
        ("untrusted client claiming our domain", b"alice@example.com", "127.0.0.2", "not_outbound"),
        ("domain we have no key for", b"eve@example.edu", "127.0.0.1", "no_key"),
        ("domain we do not sign", b"eve@example.test", "127.0.0.1", "domain_not_signed"),
        (
            "two addresses in different domains",
            b"a@example.com, b@example.net",
            "127.0.0.1",
            "multiple_author_domains",
        ),
    ],
)
def test_not_signed_with_reason(
    world: World, case: str, from_: bytes, source_ip: str, reason: str
) -> None:
    message_id, data = message(from_=from_)
    world.send(data, source_ip=source_ip)
    received = world.received(message_id)
    assert received.header("DKIM-Signature") is None
    assert received.body == data.split(b"\r\n\r\n", 1)[1]
    line = world.log_for(queue_id_of(received))
    assert line["reason"] == reason
    assert line["dkim"] == "none"


def test_two_from_headers_are_not_signed(world: World) -> None:
    message_id, data = message(extra_headers=b"From: mallory@example.com\r\n")
    world.send(data)
    received = world.received(message_id)
    assert received.header("DKIM-Signature") is None
    assert world.log_for(queue_id_of(received))["reason"] == "multiple_from"


HOSTILE = {
    "malformed header line": b"This line has no colon\r\n",
    "nul bytes": b"X-Nul: a\x00b\r\n",
    "invalid utf-8": b"X-Bad: \xff\xfe\xc3\x28\r\n",
    "thousand header lines": b"".join(f"X-Line-{i}: value {i}\r\n".encode() for i in range(1000)),
    "header without value": b"X-Empty:\r\n",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_never_lost(world: World, case: str) -> None:
    body = b"the report with \xff bytes\r\n" + (b"and a \x00 byte\r\n" if "nul" in case else b"")
    message_id, data = message(extra_headers=HOSTILE[case], body=body)
    world.send(data)
    received = world.received(message_id)
    line = world.log_for(queue_id_of(received))
    assert line["action"] == "accept", line
    if line["dkim"] != "none":
        for name, result in verify_all(received.data, world.dns).items():
            # OpenDKIM's file mode cannot read a message with a NUL byte at all
            # (it fails dkimpy's own signatures of such messages too).
            if name == "opendkim" and b"\x00" in received.data:
                continue
            checked = result.only("rsa") if name == "mail-dkim" else result
            assert checked.passed, f"{case}: {checked}\n{checked.output}"
    assert world.milter.process is not None
    assert world.milter.process.poll() is None


def test_reload_keeps_sessions_in_flight_and_applies_new_canonicalization(world: World) -> None:
    """SIGHUP mid-transaction: the open SMTP session's message is still signed and delivered."""
    import smtplib

    message_id, data = message()
    with smtplib.SMTP(*world.postfix.smtp_address, local_hostname="client.example.com") as client:
        client.ehlo()
        assert client.mail("alice@example.com")[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250
        world.milter.canonicalization = "simple/simple"
        world.milter.write_config()
        world.milter.reload()
        assert client.data(data)[0] == 250
    assert_signed(world, world.received(message_id), {"rsa1", "ed21"})
    message_id, data = message(
        extra_headers=b"X-Spaced:   three  spaces \r\n", body=b"simple  body \r\n"
    )
    try:
        world.send(data)
        received = world.received(message_id)
        assert_signed(world, received, {"rsa1", "ed21"})
        signature = received.header("DKIM-Signature") or ""
        assert "c=simple/simple" in signature.replace("\r\n", "").replace(" ", "")
    finally:
        world.milter.canonicalization = "relaxed/relaxed"
        world.milter.write_config()
        world.milter.reload()


def test_bad_config_on_reload_keeps_the_old_one(world: World) -> None:
    world.milter.config_path.write_text('[milter]\nsocket = "nonsense"\n')
    try:
        world.milter.reload()
        reloads = [
            e for e in world.milter.lines() if e.get("event") in ("reloaded", "reload_failed")
        ]
        assert reloads[-1]["event"] == "reload_failed"
        message_id, data = message()
        world.send(data)
        assert_signed(world, world.received(message_id), {"rsa1", "ed21"})
    finally:
        world.milter.write_config()
        world.milter.reload()


@pytest.mark.parametrize("kind", ["unix", "inet6"])
def test_unix_and_inet6_sockets(
    kind: str, world: World, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    from tests.integration.daemon import free_port

    # smtpd (user postfix) must reach the socket: a world-traversable directory.
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o055)
    listen = f"unix:{tmp_path}/milter.sock" if kind == "unix" else f"inet6:{free_port()}@::1"
    keys = world.milter.keys
    milter = MilterDaemon(tmp_path, keys, DOMAINS, world.dns.address, listen=listen).start()
    overrides = {"inet_protocols": "all"} if kind == "inet6" else None
    postfix = PostfixInstance(
        smtp_sink.address, milter=milter.postfix_socket, overrides=overrides
    ).start()
    try:
        message_id, data = message()
        postfix.submit_smtp(data, "alice@example.com", ["bob@example.test"])
        received = smtp_sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60)
        assert_signed(world, received, {"rsa1"})
    finally:
        postfix.stop()
        assert milter.stop() == 0
