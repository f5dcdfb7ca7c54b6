"""Proof that the integration-test harness itself works.

DNS server (UDP, TCP, truncation, drops), SMTP sink, Postfix (SMTP and
sendmail submission, milter wiring) and the three DKIM verifiers.
"""

from __future__ import annotations

import base64
import socket
import time
from dataclasses import dataclass

import dkim
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.integration.harness.dnsserver import DnsServer, txt_chunks
from tests.integration.harness.postfix import PostfixFactory, SmtpSubmitError
from tests.integration.harness.sink import SmtpSink, parse_headers
from tests.integration.harness.verifiers import (
    VerifierResult,
    verify_dkimpy,
    verify_mail_dkim,
    verify_opendkim,
)

pytestmark = pytest.mark.integration

DOMAIN = "example.com"


def ask(
    server: tuple[str, int], name: str, rdtype: str, *, tcp: bool = False, edns: bool = True
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    host, port = server
    if tcp:
        return dns.query.tcp(query, host, port=port, timeout=2)
    return dns.query.udp(query, host, port=port, timeout=2)


def txt_strings(response: dns.message.Message) -> list[tuple[bytes, ...]]:
    return [
        tuple(rd.strings)
        for rrset in response.answer
        for rd in rrset
        if isinstance(rd, dns.rdtypes.ANY.TXT.TXT)
    ]


# ---------------------------------------------------------------- DNS server


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dns_answers_a_txt_ptr(fresh_dns: DnsServer, tcp: bool) -> None:
    fresh_dns.set_a("mx.example.com", "192.0.2.10", "192.0.2.11")
    fresh_dns.set_txt("example.com", "v=spf1 -all")
    fresh_dns.set_ptr("127.0.0.2", "client.example.net")
    fresh_dns.set_mx("example.org", (10, "mx.example.com"))

    for address in fresh_dns.addresses:  # the ephemeral port and the port-53 listener
        a = ask(address, "mx.example.com", "A", tcp=tcp)
        assert a.rcode() == dns.rcode.NOERROR
        assert a.flags & dns.flags.AA
        assert sorted(rd.to_text() for rd in a.answer[0]) == ["192.0.2.10", "192.0.2.11"]
        assert txt_strings(ask(address, "EXAMPLE.com.", "TXT", tcp=tcp)) == [(b"v=spf1 -all",)]
        ptr = ask(address, "2.0.0.127.in-addr.arpa", "PTR", tcp=tcp)
        assert ptr.answer[0][0].to_text() == "client.example.net."
        mx = ask(address, "example.org", "MX", tcp=tcp)
        assert mx.answer[0][0].to_text() == "10 mx.example.com."

    transport = "tcp" if tcp else "udp"
    assert fresh_dns.query_count("mx.example.com", "A") == len(fresh_dns.addresses)
    assert {q.transport for q in fresh_dns.queries} == {transport}


def test_dns_negative_answers(fresh_dns: DnsServer) -> None:
    fresh_dns.set_txt("sel1._domainkey.example.com", "v=DKIM1; p=")
    nx = ask(fresh_dns.address, "nope.example.com", "TXT")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.flags & dns.flags.AA
    nodata = ask(fresh_dns.address, "sel1._domainkey.example.com", "A")
    assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
    empty_non_terminal = ask(fresh_dns.address, "_domainkey.example.com", "TXT")
    assert (empty_non_terminal.rcode(), empty_non_terminal.answer) == (dns.rcode.NOERROR, [])
    fresh_dns.remove("sel1._domainkey.example.com")
    gone = ask(fresh_dns.address, "sel1._domainkey.example.com", "TXT")
    assert gone.rcode() == dns.rcode.NXDOMAIN
    fresh_dns.set_rcode("broken.example.com", "SERVFAIL")
    assert ask(fresh_dns.address, "broken.example.com", "A").rcode() == dns.rcode.SERVFAIL


def test_dns_long_txt_keeps_strings_and_truncates_to_tcp(fresh_dns: DnsServer) -> None:
    value = "v=DKIM1; k=rsa; p=" + "A" * 700
    strings = txt_chunks(value)
    assert [len(s) for s in strings] == [255, 255, 208]
    fresh_dns.set_txt("sel1._domainkey.example.com", *strings)
    name = "sel1._domainkey.example.com"

    # Over 512 bytes without EDNS: empty answer with TC over UDP ...
    truncated = ask(fresh_dns.address, name, "TXT", edns=False)
    assert truncated.flags & dns.flags.TC
    assert truncated.answer == []
    # ... and the whole record, as the same three strings, over TCP.
    assert txt_strings(ask(fresh_dns.address, name, "TXT", tcp=True, edns=False)) == [strings]
    # With EDNS (payload 1232) it fits in one UDP answer.
    with_edns = ask(fresh_dns.address, name, "TXT", edns=True)
    assert not with_edns.flags & dns.flags.TC
    assert with_edns.edns == 0
    assert txt_strings(with_edns) == [strings]
    # A client doing the usual fallback ends up on TCP.
    query = dns.message.make_query(name, "TXT", use_edns=False)
    response, used_tcp = dns.query.udp_with_fallback(
        query, fresh_dns.address[0], port=fresh_dns.address[1], timeout=2
    )
    assert used_tcp
    assert txt_strings(response) == [strings]
    transports = [q.transport for q in fresh_dns.queries if q.qname == name]
    assert transports == ["udp", "tcp", "udp", "udp", "tcp"]

    with pytest.raises(ValueError, match="exceeds 255"):
        fresh_dns.set_txt("too-long.example.com", "x" * 256)


def test_dns_dropped_queries_time_out(fresh_dns: DnsServer) -> None:
    fresh_dns.set_txt("slow.example.com", "unreachable")
    fresh_dns.set_drop("slow.example.com")
    host, port = fresh_dns.address
    query = dns.message.make_query("slow.example.com", "TXT")
    started = time.monotonic()
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(query, host, port=port, timeout=0.3)
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(query, host, port=port, timeout=0.3)
    assert time.monotonic() - started < 2
    assert fresh_dns.query_count("slow.example.com") == 2
    fresh_dns.set_drop("slow.example.com", False)
    assert txt_strings(ask(fresh_dns.address, "slow.example.com", "TXT")) == [(b"unreachable",)]


# ------------------------------------------------------------ sink + Postfix


def _message(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    msgid = f"<{subject.replace(' ', '-')}.{time.monotonic_ns()}@example.com>"
    return (
        b"From: Alice <alice@example.com>\r\n"
        b"To: Bob <bob@example.org>\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Message-ID: " + msgid.encode() + b"\r\n"
        b"Date: Thu, 27 Nov 2025 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n" + body
    )


@pytest.mark.parametrize("source_ip", ["127.0.0.1", "127.0.0.2"])
def test_postfix_relays_smtp_to_sink_byte_for_byte(
    postfix_factory: PostfixFactory, smtp_sink: SmtpSink, source_ip: str
) -> None:
    postfix = postfix_factory()
    body = (
        b"Line one.\r\n"
        b".leading dot survives dot-stuffing\r\n"
        b"trailing spaces   \r\n"
        b"\t tab\r\n"
        b"8-bit: caf\xc3\xa9\r\n"
        b"\r\n"
        b"\r\n"
    )
    message = _message("smtp relay", body)
    reply = postfix.submit_smtp(
        message, "alice@example.com", ["bob@example.org"], source_ip=source_ip
    )
    assert reply.code == 250
    assert reply.queue_id

    received = smtp_sink.wait_for(1)[0]
    assert received.mail_from == "alice@example.com"
    assert received.rcpt_tos == ("bob@example.org",)
    assert "BODY=8BITMIME" in received.mail_options
    # Postfix prepends exactly its Received header; everything else is untouched.
    first = received.headers[0]
    assert first[0] == "Received"
    assert f"[{source_ip}]" in first[1]
    assert reply.queue_id in first[1]
    assert received.data.endswith(message)
    assert received.data[: -len(message)].startswith(b"Received: ")
    assert received.body == body
    assert smtp_sink.find("Subject", "smtp relay") == received
    postfix.wait_for_log(rf"{reply.queue_id}: to=<bob@example.org>.*status=sent")
    postfix.wait_queue_empty()


def test_postfix_sendmail_submission_arrives(
    postfix_factory: PostfixFactory, smtp_sink: SmtpSink
) -> None:
    postfix = postfix_factory(banner_probe=False)  # ready = listening, no SMTP session made
    message = _message("local submission", b"Submitted with sendmail.\r\n")
    postfix.submit_sendmail(message, "alice@example.com", ["bob@example.org"])
    msgid = dict(parse_headers(message))["Message-ID"]
    received = smtp_sink.wait_for_header("Message-ID", msgid)
    assert received.mail_from == "alice@example.com"
    assert received.rcpt_tos == ("bob@example.org",)
    assert received.body == b"Submitted with sendmail.\r\n"
    # Local submission: Received "by" Postfix "id", with no client address.
    assert received.headers[0][0] == "Received"
    assert "(Postfix, from userid 0)" in received.headers[0][1]
    assert "postfix/pickup" in postfix.log_text()


def test_postfix_milter_unreachable_tempfails(
    postfix_factory: PostfixFactory, smtp_sink: SmtpSink
) -> None:
    # Nothing listens on this port, so milter_default_action = tempfail applies.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    postfix = postfix_factory(milter=f"inet:127.0.0.1:{dead_port}")
    assert postfix.postconf("smtpd_milters") == f"inet:127.0.0.1:{dead_port}"
    assert postfix.postconf("non_smtpd_milters") == f"inet:127.0.0.1:{dead_port}"
    with pytest.raises(SmtpSubmitError) as refused:
        postfix.submit_smtp(_message("milter down"), "alice@example.com", ["bob@example.org"])
    assert refused.value.code == 451
    assert refused.value.stage in {"MAIL", "RCPT", "DATA"}
    assert smtp_sink.messages == []


def test_postfix_queue_defer_and_flush(
    postfix_factory: PostfixFactory, smtp_sink: SmtpSink
) -> None:
    postfix = postfix_factory()
    smtp_sink.set_reply("451 4.3.0 sink says later")
    reply = postfix.submit_smtp(_message("deferred"), "alice@example.com", ["bob@example.org"])
    postfix.wait_for_log(rf"{reply.queue_id}: .*status=deferred")
    entries = postfix.queue()
    assert [(e.queue_id, e.queue_name) for e in entries] == [(reply.queue_id, "deferred")]
    assert entries[0].recipients[0].address == "bob@example.org"
    assert "sink says later" in (entries[0].recipients[0].delay_reason or "")
    smtp_sink.set_reply(None)
    postfix.flush()
    smtp_sink.wait_for_header("Subject", "deferred")
    postfix.wait_queue_empty()


# ------------------------------------------------------------------ verifiers


@dataclass(frozen=True)
class Keys:
    rsa_pem: bytes
    rsa_record: str
    ed25519_seed: bytes
    ed25519_record: str


@pytest.fixture(scope="module")
def keys() -> Keys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    rsa_pub = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_seed = ed_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    ed_pub = ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Keys(
        rsa_pem=rsa_pem,
        rsa_record="v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_pub).decode(),
        ed25519_seed=base64.b64encode(ed_seed),
        ed25519_record="v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_pub).decode(),
    )


@pytest.fixture
def signed_message(fresh_dns: DnsServer, keys: Keys) -> bytes:
    """A message signed by dkimpy with sel1 (RSA-2048) and sel2 (Ed25519), keys published."""
    fresh_dns.set_txt("sel1._domainkey.example.com", *txt_chunks(keys.rsa_record))
    fresh_dns.set_txt("sel2._domainkey.example.com", *txt_chunks(keys.ed25519_record))
    assert len(fresh_dns.txt_strings("sel1._domainkey.example.com")[0]) == 2  # really split
    message = _message("signed", b"A body that must not change.\r\n")
    headers = [b"from", b"to", b"subject", b"message-id", b"date"]
    rsa_sig = dkim.sign(message, b"sel1", DOMAIN.encode(), keys.rsa_pem, include_headers=headers)
    ed_sig = dkim.sign(
        message,
        b"sel2",
        DOMAIN.encode(),
        keys.ed25519_seed,
        signature_algorithm=b"ed25519-sha256",
        include_headers=headers,
    )
    assert isinstance(rsa_sig, bytes)
    assert isinstance(ed_sig, bytes)
    return rsa_sig + ed_sig + message


def _tamper(message: bytes) -> bytes:
    tampered = message.replace(b"must not change", b"must not chanGe")
    assert len(tampered) == len(message)
    assert tampered != message
    return tampered


def _explain(result: VerifierResult) -> str:
    return f"{result}\n{result.output}"


def test_dkimpy_verifier(signed_message: bytes, fresh_dns: DnsServer) -> None:
    good = verify_dkimpy(signed_message, fresh_dns)
    assert good.passed, _explain(good)
    assert [(r.selector, r.algorithm, r.detail) for r in good.results] == [
        ("sel1", "rsa-sha256", "pass"),
        ("sel2", "ed25519-sha256", "pass"),
    ]
    bad = verify_dkimpy(_tamper(signed_message), fresh_dns)
    assert not bad.passed
    assert not any(r.passed for r in bad.results), _explain(bad)
    assert "body hash mismatch" in bad.results[0].detail


def test_mail_dkim_verifier(signed_message: bytes, fresh_dns: DnsServer) -> None:
    good = verify_mail_dkim(signed_message, fresh_dns)
    assert good.only("rsa").passed, _explain(good)
    assert good.for_selector("sel1").detail == "pass"
    # Debian's Mail::DKIM does not know Ed25519; whatever it says, it is not a pass.
    assert not good.for_selector("sel2").passed
    assert fresh_dns.query_count("sel1._domainkey.example.com", "TXT") >= 1
    bad = verify_mail_dkim(_tamper(signed_message), fresh_dns)
    assert not bad.passed
    assert not bad.only("rsa").passed
    assert bad.for_selector("sel1").detail == "fail (body has been altered)"


def test_opendkim_verifier(signed_message: bytes, fresh_dns: DnsServer) -> None:
    good = verify_opendkim(signed_message, fresh_dns)
    assert good.passed, _explain(good)
    assert [(r.selector, r.algorithm, r.result) for r in good.results] == [
        ("sel1", "rsa-sha256", "pass"),
        ("sel2", "ed25519-sha256", "pass"),
    ]
    # It asked our server, on the port-53 listener, for both keys.
    port53 = fresh_dns.port53_address
    assert port53 is not None
    asked = {(q.qname, q.listener) for q in fresh_dns.queries}
    assert ("sel1._domainkey.example.com", port53) in asked
    assert ("sel2._domainkey.example.com", port53) in asked

    bad = verify_opendkim(_tamper(signed_message), fresh_dns)
    assert not bad.passed
    assert not any(r.passed for r in bad.results), _explain(bad)


def test_opendkim_verifier_without_port53(keys: Keys, signed_message: bytes) -> None:
    # A server with no port-53 listener: OpenDKIM's unbound forwards to ADDRESS@PORT.
    with DnsServer() as private:
        private.set_txt("sel1._domainkey.example.com", *txt_chunks(keys.rsa_record))
        private.set_txt("sel2._domainkey.example.com", keys.ed25519_record)
        result = verify_opendkim(signed_message, private)
        assert result.passed, _explain(result)
        assert private.query_count("sel2._domainkey.example.com", "TXT") >= 1


def test_verifiers_fail_without_key_and_on_timeout(
    signed_message: bytes, fresh_dns: DnsServer
) -> None:
    fresh_dns.remove("sel1._domainkey.example.com")
    fresh_dns.set_drop("sel2._domainkey.example.com")
    for verify in (verify_dkimpy, verify_mail_dkim, verify_opendkim):
        result = verify(signed_message, fresh_dns, timeout=3)
        assert not result.passed, _explain(result)
        assert not result.for_selector("sel1").passed
        assert not result.for_selector("sel2").passed
