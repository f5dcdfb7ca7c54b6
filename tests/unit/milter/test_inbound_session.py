"""Received mail through the milter's wire protocol: verified, one Authentication-Results on top,
a forged one removed, DMARC enforced when asked. DNS answers come from a table here; the real
resolver and Postfix are the integration tests' part."""

from __future__ import annotations

import base64
import logging
import struct
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reputable.checks.dmarc import DmarcLookup, discover_policy
from reputable.checks.spf import SpfEvaluation, SpfResult
from reputable.config import InboundConfig
from reputable.inbound.check import Envelope as Received
from reputable.inbound.check import prepare
from reputable.inbound.lookups import InboundLookups, KeyAnswer
from reputable.log import record_fields
from reputable.milter import protocol as p
from reputable.runtime import RuntimeHolder
from reputable.signing.headers import HeaderField
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
from tests.unit.milter.test_session import runtime_for

AUTHSERV = "mx.test.example"
BODY = b"Hello,\r\n\r\nthe report is attached.\r\n"


class TableLookups(InboundLookups):
    """The DNS answers of one test: keys, an SPF result, DMARC records."""

    def __init__(self, keys: dict[str, str], spf: SpfResult, dmarc: dict[str, list[str]]) -> None:
        self.records = keys
        self.spf_result = spf
        self.dmarc_records = dmarc
        self.asked: list[str] = []

    @property
    def authserv_id(self) -> str:
        return AUTHSERV

    @property
    def timeout_s(self) -> float:
        return 2.0

    def key(self, selector: str, domain: str) -> KeyAnswer:
        name = f"{selector}._domainkey.{domain}"
        self.asked.append(name)
        return KeyAnswer((self.records[name],) if name in self.records else ())

    def spf(self, ip: str, sender: str, helo: str) -> SpfEvaluation:
        self.asked.append(f"spf {ip} {sender} {helo}")
        return SpfEvaluation(ip, sender.rpartition("@")[2], self.spf_result)

    def dmarc(self, from_domain: str) -> DmarcLookup:
        return discover_policy(from_domain, self.dmarc_records)

    def org_domain(self, domain: str) -> str:
        return ".".join(domain.split(".")[-2:])


class SlowLookups(TableLookups):
    """Every key lookup takes 50 ms, with a [dns] timeout of 20 ms."""

    @property
    def timeout_s(self) -> float:
        return 0.02

    def key(self, selector: str, domain: str) -> KeyAnswer:
        time.sleep(0.05)
        return super().key(selector, domain)


def test_the_key_lookups_of_one_message_have_a_budget() -> None:
    """A message naming many keys that answer slowly holds its worker for a few timeouts only."""
    empty_body = "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY="  # simple, no body
    tags = f"v=1; a=rsa-sha256; d=example.org; h=from; bh={empty_body}; b=AAAA"
    fields = [HeaderField(b"DKIM-Signature", f" {tags}; s=s{n}".encode()) for n in range(5)]
    fields.append(HeaderField(b"From", b" bob@example.org"))
    lookups = SlowLookups({}, SpfResult.PASS, {})
    started = time.monotonic()
    check = prepare(fields, Received("198.51.100.7", "bob@example.org", "mx"), lookups)
    assert time.monotonic() - started < 0.2  # 2 lookups of 50 ms fit 3 x 20 ms; 5 would not
    asked = [name for name in lookups.asked if "_domainkey" in name]
    assert 1 <= len(asked) <= 2
    late = [answer.error for answer in check.keys.values() if answer.error]
    assert len(late) == 5 - len(asked) and "took too long" in late[0]
    report = check.finish(InboundConfig(), AUTHSERV)
    assert [s.result.value for s in report.signatures].count("temperror") == len(late)


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def signed_fields(pem: bytes, extra: Sequence[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    fields = [
        *extra,
        ("From", b" Bob <bob@example.org>"),
        ("To", b" alice@example.com"),
        ("Subject", b" report"),
    ]
    message = b"".join(n.encode() + b":" + v + b"\r\n" for n, v in fields) + b"\r\n" + BODY
    signature = dkim.sign(
        message, b"sel", b"example.org", pem, include_headers=[b"from", b"subject"]
    )
    name, _, value = signature.rstrip(b"\r\n").partition(b":")
    return [(name.decode(), value.replace(b"\r\n", b"\n")), *fields]


def inbound_holder(keys_dir: Path, lookups: InboundLookups, **inbound: object) -> RuntimeHolder:
    runtime = runtime_for(keys_dir)
    config = replace(runtime.config, inbound=replace(InboundConfig(), **inbound))  # type: ignore[arg-type]
    holder = RuntimeHolder(replace(runtime, config=config))
    holder.inbound = lookups
    return holder


def converse(
    holder: RuntimeHolder, fields: list[tuple[str, bytes]], body: bytes = BODY
) -> list[tuple[bytes, bytes]]:
    replies: list[tuple[bytes, bytes]] = []

    async def scenario() -> None:
        async with engine(holder, 0) as listener:
            mta = await Mta.open(listener)
            await mta.negotiate()
            mta.send([connect("198.51.100.7"), p.packet(b"H", b"mail.example.org\0")])
            mta.send([*mail("<bob@example.org>"), p.packet(b"T")])
            assert await mta.until_final() == [(b"c", b"")]
            mta.send([*headers(fields, "Q7"), *end_of_headers("Q7")])
            eoh = await mta.until_final()
            assert eoh == [(b"c", b"")], eoh  # received mail is verified: the body is wanted
            mta.send(body_and_end(body, "Q7"))
            replies.extend(await mta.until_final())
            await mta.close()

    run(scenario())
    return replies


def inserted(replies: list[tuple[bytes, bytes]]) -> list[tuple[int, str, str]]:
    found = []
    for code, data in replies:
        if code in (b"i", b"m"):
            (index,) = struct.unpack_from(">I", data)
            name, value, _ = data[4:].split(b"\0")
            found.append((index, name.decode(), value.decode()))
    return found


def test_a_good_message_gets_one_header_on_top_and_the_log_says_pass(
    keys_dir: Path, key: tuple[bytes, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    pem, record = key
    lookups = TableLookups(
        {"sel._domainkey.example.org": record},
        SpfResult.PASS,
        {"example.org": ["v=DMARC1; p=reject"]},
    )
    replies = converse(inbound_holder(keys_dir, lookups), signed_fields(pem))
    assert [code for code, _ in replies] == [b"i", b"a"]
    ((index, name, value),) = inserted(replies)
    assert (index, name) == (0, "Authentication-Results")
    lines = value.split("\n\t")
    assert lines[0] == f"{AUTHSERV};"
    assert lines[1].startswith("dkim=pass header.d=example.org header.s=sel header.a=rsa-sha256")
    assert lines[2] == "spf=pass smtp.mailfrom=bob@example.org;"
    assert lines[3] == "dmarc=pass (p=reject) header.from=example.org;"
    assert lines[4] == "arc=none"
    assert "spf 198.51.100.7 bob@example.org mail.example.org" in lookups.asked
    (line,) = [record_fields(r) for r in caplog.records if "action" in record_fields(r)]
    assert (line["source"], line["action"]) == ("external", "accept")
    wanted = {"dkim_in": "pass", "spf_in": "pass", "dmarc_in": "pass", "arc_in": "none"}
    assert {k: line[k] for k in wanted} == wanted


def test_a_forged_header_with_our_id_is_removed_and_another_stays(
    keys_dir: Path, key: tuple[bytes, str]
) -> None:
    pem, record = key
    lookups = TableLookups({"sel._domainkey.example.org": record}, SpfResult.PASS, {})
    extra = [
        ("Authentication-Results", b" relay.example.net; dkim=pass header.d=example.org"),
        ("Authentication-Results", b" MX.Test.Example; dkim=pass header.d=paypal.com"),
        ("Authentication-Results", b" mx.test.example (forged); spf=pass"),
    ]
    replies = converse(inbound_holder(keys_dir, lookups), signed_fields(pem, extra))
    changes = inserted(replies)
    # The forged ones (2nd and 3rd of the name), the later first, then ours on top.
    assert [(i, n, v) for i, n, v in changes if v == ""] == [
        (3, "Authentication-Results", ""),
        (2, "Authentication-Results", ""),
    ]
    assert [code for code, _ in replies] == [b"m", b"m", b"i", b"a"]


@pytest.mark.parametrize(
    ("record", "answer", "action"),
    [
        ("v=DMARC1; p=reject", b"r", "reject"),
        ("v=DMARC1; p=reject; t=y", b"a", "hold"),  # one step lower: quarantine
        ("v=DMARC1; p=quarantine", b"a", "hold"),
        ("v=DMARC1; p=quarantine; t=y", b"a", "accept"),
        ("v=DMARC1; p=none", b"a", "accept"),
    ],
)
def test_dmarc_enforcement_follows_the_policy_and_t(
    keys_dir: Path,
    key: tuple[bytes, str],
    caplog: pytest.LogCaptureFixture,
    record: str,
    answer: bytes,
    action: str,
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    pem, _ = key
    # No key published and SPF fails: DMARC fails.
    lookups = TableLookups({}, SpfResult.FAIL, {"example.org": [record]})
    holder = inbound_holder(keys_dir, lookups, dmarc_enforce=True)
    replies = converse(holder, signed_fields(pem))
    codes = [code for code, _ in replies]
    assert codes[-1] in (answer, b"y")
    if action == "reject":
        assert b"550" in replies[-1][1] and b"DMARC policy of example.org" in replies[-1][1]
    assert (b"q" in codes) == (action == "hold")
    (line,) = [record_fields(r) for r in caplog.records if "action" in record_fields(r)]
    assert (line["action"], line["dmarc_in"], line["dkim_in"]) == (action, "fail", "permerror")


def test_without_enforcement_a_dmarc_failure_is_only_reported(
    keys_dir: Path, key: tuple[bytes, str]
) -> None:
    pem, _ = key
    lookups = TableLookups({}, SpfResult.FAIL, {"example.org": ["v=DMARC1; p=reject"]})
    replies = converse(inbound_holder(keys_dir, lookups), signed_fields(pem))
    assert [code for code, _ in replies] == [b"i", b"a"]
    ((_, _, value),) = inserted(replies)
    assert "dmarc=fail (p=reject)" in value and "spf=fail" in value
