"""Received mail through a real Postfix: reputable verifies it and writes one Authentication-Results.

Postfix's smtpd listens on loopback; each corpus case (see
``harness/inbound_corpus.py``) is sent with Postfix's XCLIENT
(``smtpd_authorized_xclient_hosts = 127.0.0.0/8``), so that smtpd, and the
milter after it, see the case's outside client IP and HELO, and the message
is relayed for ``inbound.test`` (``relay_domains``) to the test sink.
``reputable milter`` runs with ``[inbound] verify = true`` and ``authserv_id
= "mx.test.example"``, its only resolver the test DNS server.

Each message at the sink must carry exactly one Authentication-Results with
our authserv-id which, parsed back with ``authres``, is what the corpus
expects (RFC 6376, 7208, 9989, 8617 in RFC 8601's words); its dkim= results
must be OpenDKIM's, signature by signature (keyed by header.d and header.b),
where the corpus does not record that OpenDKIM's word differs from the RFCs'
(see ``test_inbound_corpus.py``; there ours must be the RFCs'); its spf=
must be pyspf's. One Postfix and one milter serve the module; DMARC
enforcement gets a second pair, started by the tests that need it.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.inbound_corpus import (
    AUTHSERV_ID,
    CASE_NAMES,
    FORWARDER,
    RECIPIENT,
    RECIPIENT_DOMAIN,
    Anchors,
    DkimVerdict,
    InboundCase,
    authserv_id,
    describe,
    dmarc_policy,
    parse_results,
)
from tests.integration.harness.postfix import PostfixInstance, SmtpReply, SmtpSubmitError
from tests.integration.harness.sink import ReceivedMessage, SmtpSink

POSTFIX_SETTINGS = {
    "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
    "relay_domains": RECIPIENT_DOMAIN,
}
OUTSIDE = "198.51.100.200"  # a client with no records anywhere


def submit_xclient(
    postfix: PostfixInstance, message: bytes, client_ip: str, helo: str, mail_from: str
) -> SmtpReply:
    """Send from loopback, but as *client_ip* saying *helo*: Postfix's XCLIENT, then EHLO again.

    Raises SmtpSubmitError with the stage and code when Postfix refuses.
    """
    stage = "connect"
    try:
        with smtplib.SMTP(timeout=60, local_hostname="xclient.test") as client:
            code, reply = client.connect(*postfix.smtp_address)
            if code != 220:
                raise SmtpSubmitError(stage, code, reply.decode("utf-8", "replace"))
            client.ehlo()
            stage = "XCLIENT"
            code, reply = client.docmd("XCLIENT", f"ADDR={client_ip} NAME=[UNAVAILABLE]")
            if code != 220:
                raise SmtpSubmitError(stage, code, reply.decode("utf-8", "replace"))
            stage = "EHLO"
            code, reply = client.ehlo(helo)
            if code != 250:
                raise SmtpSubmitError(stage, code, reply.decode("utf-8", "replace"))
            stage = "MAIL"
            code, reply = client.mail(mail_from)
            if code != 250:
                raise SmtpSubmitError(stage, code, reply.decode("utf-8", "replace"))
            stage = "RCPT"
            code, reply = client.rcpt(RECIPIENT)
            if code not in (250, 251):
                raise SmtpSubmitError(stage, code, reply.decode("utf-8", "replace"))
            stage = "DATA"
            code, reply = client.data(message)
            text = reply.decode("utf-8", "replace")
            if code != 250:
                raise SmtpSubmitError(stage, code, text)
            return SmtpReply(code, text)
    except smtplib.SMTPResponseException as e:
        error = e.smtp_error
        text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        raise SmtpSubmitError(stage, e.smtp_code, text) from e
    except (smtplib.SMTPServerDisconnected, OSError) as e:
        raise SmtpSubmitError(stage, 0, f"connection failed: {e}") from e


@dataclass
class Inbound:
    dns: DnsServer
    sink: SmtpSink
    milter: MilterDaemon
    postfix: PostfixInstance

    def send(self, case: InboundCase, message: bytes | None = None) -> SmtpReply:
        return submit_xclient(
            self.postfix,
            case.message if message is None else message,
            case.client_ip,
            case.helo,
            case.mail_from,
        )

    def received(self, message_id: str) -> ReceivedMessage:
        return self.sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60)

    def line(self, queue_id: str) -> dict[str, str]:
        for line in self.milter.message_lines():
            if line.get("queue_id") == queue_id:
                return line
        raise KeyError(f"no log line for {queue_id}: {self.milter.message_lines()[-3:]}")


def start_inbound(
    dns: DnsServer, workdir: Path, sink: SmtpSink, enforce: bool, trusted: list[str] | None = None
) -> Inbound:
    keys = workdir / "keys"
    keys.mkdir(exist_ok=True)
    host, port = dns.address
    milter = MilterDaemon(workdir, keys, ["mx.test.example"], dns.address)
    milter.extra = (
        f'[keys]\nverify_nameservers = ["{host}:{port}"]\n'
        "[inbound]\n"
        "verify = true\n"
        f'authserv_id = "{AUTHSERV_ID}"\n'
        f"dmarc_enforce = {'true' if enforce else 'false'}\n"
        + (
            "trusted_arc_signers = [" + ", ".join(f'"{t}"' for t in trusted) + "]\n"
            if trusted
            else ""
        )
    )
    milter.start()
    try:
        postfix = PostfixInstance(
            sink.address, milter=milter.postfix_socket, overrides=POSTFIX_SETTINGS
        ).start(banner_probe=False)
    except BaseException:
        milter.stop()
        raise
    return Inbound(dns, sink, milter, postfix)


def stop_inbound(world: Inbound) -> None:
    world.postfix.stop()
    world.milter.stop()


@pytest.fixture(scope="module")
def world(
    dns53: DnsServer, cases: dict[str, InboundCase], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Inbound]:
    with SmtpSink() as sink:
        inbound = start_inbound(dns53, tmp_path_factory.mktemp("inbound"), sink, enforce=False)
        try:
            yield inbound
        finally:
            stop_inbound(inbound)


@pytest.fixture(scope="module")
def enforcing(
    dns53: DnsServer, cases: dict[str, InboundCase], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Inbound]:
    with SmtpSink() as sink:
        inbound = start_inbound(
            dns53,
            tmp_path_factory.mktemp("enforcing"),
            sink,
            enforce=True,
            trusted=[FORWARDER],
        )
        try:
            yield inbound
        finally:
            stop_inbound(inbound)


def queue_id_of(received: ReceivedMessage) -> str:
    # Postfix's Received: header ends with "... id QUEUEID for <rcpt>; date".
    text = received.header("Received") or ""
    return text.split(" id ", 1)[1].split()[0].rstrip(";")


def ours(received: ReceivedMessage) -> list[str]:
    """The Authentication-Results values whose authserv-id is ours."""
    return [
        v for v in received.header_values("Authentication-Results") if authserv_id(v) == AUTHSERV_ID
    ]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_received_mail_gets_the_expected_authentication_results(
    name: str, world: Inbound, cases: dict[str, InboundCase], said: dict[str, Anchors]
) -> None:
    case, anchor = cases[name], said[name]
    world.send(case)
    received = world.received(case.message_id)
    values = ours(received)
    assert len(values) == 1, f"{describe(case)}\n{received.header_bytes.decode(errors='replace')}"
    (value,) = values
    print(f"{describe(case)}\nours: {value}\n{anchor.opendkim}\npyspf: {anchor.spf.result}")
    found = parse_results(value)
    assert found == case.expected(), f"{describe(case)}\nours: {value}"
    if case.dmarc_policy is not None:
        assert dmarc_policy(value) == case.dmarc_policy, f"{describe(case)}\nours: {value}"

    # The anchors: OpenDKIM's word on each signature (where it is the RFCs'), pyspf's on SPF.
    theirs = anchor.opendkim.by_signature()
    for signature in case.verified:
        if signature.opendkim != signature.result:
            continue  # OpenDKIM's word is not the RFCs' here: see test_inbound_corpus.py
        key = (signature.domain, signature.b)
        assert found.dkim_by_signature().get(key) == theirs.get(key), (
            f"{describe(case)}\nours: {value}\n{anchor.opendkim}"
        )
    if not case.signatures:
        opendkim = anchor.opendkim.verdicts
        assert opendkim is not None and opendkim.dkim == found.dkim == (DkimVerdict("none"),)
    assert found.spf is not None and found.spf[0] == anchor.spf.result, (
        f"{describe(case)}\nours: {value}\npyspf: {anchor.spf.output}"
    )

    line = world.line(queue_id_of(received))
    assert line.get("source") == "external", line
    assert (line.get("spf_in"), line.get("dmarc_in"), line.get("arc_in")) == (
        case.spf,
        case.dmarc,
        case.arc,
    ), line
    words = {s.result for s in case.verified} or {"none"}
    assert line.get("dkim_in") in words, line


FORGED = (
    b"Authentication-Results: mx.test.example; dkim=pass header.d=paypal.com\r\n"
    b"Authentication-Results: other.example; spf=pass smtp.mailfrom=someone@other.example\r\n"
)
FORGED_VARIANTS = (
    b"Authentication-Results: MX.Test.Example; dkim=pass header.d=bank.example\r\n"
    b"Authentication-Results: mx.test.example 1; spf=pass smtp.mailfrom=ceo@bank.example\r\n"
    b"Authentication-Results: (a comment first) mx.test.example;\r\n"
    b"\tdmarc=pass header.from=bank.example\r\n"
)


def forged_message(name: str, forged: bytes) -> tuple[str, bytes]:
    message_id = f"{name}@outside.example"
    return message_id, (
        forged + b"From: Mallory <mallory@outside.example>\r\n"
        b"To: Bob <" + RECIPIENT.encode() + b">\r\n"
        b"Subject: your account\r\n"
        b"Date: Fri, 27 Nov 2026 05:00:00 +0000\r\n"
        b"Message-ID: <" + message_id.encode() + b">\r\n"
        b"\r\nPlease log in.\r\n"
    )


def send_forged(world: Inbound, name: str, forged: bytes) -> ReceivedMessage:
    message_id, message = forged_message(name, forged)
    submit_xclient(
        world.postfix, message, OUTSIDE, "mail.outside.example", "mallory@outside.example"
    )
    return world.received(message_id)


def test_a_forged_authentication_results_with_our_authserv_id_is_removed(world: Inbound) -> None:
    received = send_forged(world, "forged", FORGED)
    values = received.header_values("Authentication-Results")
    print(values)
    assert not [v for v in values if "paypal.com" in v], values
    (value,) = ours(received)
    assert parse_results(value).dkim == (DkimVerdict("none"),)
    assert "other.example; spf=pass smtp.mailfrom=someone@other.example" in values
    assert len(values) == 2, values


def test_forged_ones_in_another_case_with_a_version_or_a_comment_are_ours_too(
    world: Inbound,
) -> None:
    """RFC 8601 §5: any field claiming our authserv-id goes, however it is written."""
    received = send_forged(world, "forged-variants", FORGED_VARIANTS)
    values = received.header_values("Authentication-Results")
    print(values)
    assert not [v for v in values if "bank.example" in v], values
    assert len(ours(received)) == 1 and len(values) == 1, values


# --- [inbound] dmarc_enforce = true


def test_enforced_p_reject_is_refused_at_the_smtp_client(
    enforcing: Inbound, cases: dict[str, InboundCase]
) -> None:
    case = cases["dmarc-fail-reject"]
    with pytest.raises(SmtpSubmitError) as refused:
        enforcing.send(case)
    print(refused.value)
    assert refused.value.stage == "DATA"
    assert 500 <= refused.value.code < 600, refused.value
    assert case.from_domain in refused.value.message
    assert enforcing.sink.find("Message-ID", f"<{case.message_id}>") is None


def test_enforced_sp_reject_refuses_a_subdomain(
    enforcing: Inbound, cases: dict[str, InboundCase]
) -> None:
    case = cases["dmarc-subdomain"]
    with pytest.raises(SmtpSubmitError) as refused:
        enforcing.send(case)
    assert 500 <= refused.value.code < 600, refused.value


@pytest.mark.parametrize("name", ["dmarc-fail-quarantine", "dmarc-testing"])
def test_enforced_p_quarantine_and_p_reject_with_t_y_are_held(
    name: str, enforcing: Inbound, cases: dict[str, InboundCase]
) -> None:
    """p=quarantine is held; t=y lowers p=reject one level, to quarantine: held, not refused."""
    case = cases[name]
    reply = enforcing.send(case)
    assert reply.queue_id is not None
    held = [e for e in enforcing.postfix.queue() if e.queue_id == reply.queue_id]
    print(held)
    assert [e.queue_name for e in held] == ["hold"], enforcing.postfix.queue()
    assert enforcing.sink.find("Message-ID", f"<{case.message_id}>") is None
    line = enforcing.line(reply.queue_id)
    assert (line.get("action"), line.get("dmarc_in")) == ("hold", "fail"), line


@pytest.mark.parametrize(
    "name", ["dmarc-fail-none", "dmarc-pass-dkim-only", "dmarc-pass-spf-only", "arc-pass"]
)
def test_enforcement_delivers_p_none_passes_and_a_trusted_arc_pass(
    name: str, enforcing: Inbound, cases: dict[str, InboundCase]
) -> None:
    """p=none fails are only reported; so is a p=reject fail sealed by a trusted forwarder."""
    case = cases[name]
    enforcing.send(case)
    received = enforcing.received(case.message_id)
    (value,) = ours(received)
    assert parse_results(value) == case.expected(), value


def test_enforcement_refuses_an_arc_chain_that_fails(
    enforcing: Inbound, cases: dict[str, InboundCase]
) -> None:
    """arc-fail is sealed by the trusted forwarder, but its chain fails: p=reject applies."""
    with pytest.raises(SmtpSubmitError) as refused:
        enforcing.send(cases["arc-fail"])
    assert 500 <= refused.value.code < 600, refused.value
