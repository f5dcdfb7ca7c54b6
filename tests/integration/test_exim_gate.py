"""The reputation gate through a real Exim's ACL, pasted from the README, asking the milter.

The host's world is the Postfix gate tests' (tests/integration/test_gate.py):
a forward-confirmed PTR, SPF, DMARC p=reject, the key's record, and a test
blocklist that lists the sending IP when a test says so. Exim relays to the
sink; the SMTP client sees what Exim answers.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.exim import USER, EximInstance, ensure_user, exim_binary
from tests.integration.harness.sink import ReceivedMessage, SmtpSink
from tests.integration.test_gate import DOMAIN, HELO, IP, ZONE, keys_dir, list_ip, world

pytestmark = pytest.mark.integration
__all__ = ["keys_dir", "world"]  # the Postfix gate tests' fixtures, used here too

Gate = Callable[[str], tuple[MilterDaemon, EximInstance]]


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory Debian-exim may enter: the gate's socket and Exim's spool live in it."""
    exim_binary()
    ensure_user()
    made = Path(tempfile.mkdtemp(prefix="reputable-exim-gate-", dir="/var/tmp"))
    os.chmod(made, 0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


@pytest.fixture
def gate(world: DnsServer, keys_dir: Path, base: Path, smtp_sink: SmtpSink) -> Iterator[Gate]:
    started: list[MilterDaemon | EximInstance] = []
    socket = base / "run" / "exim.sock"

    def start(actions: str = "") -> tuple[MilterDaemon, EximInstance]:
        host, port = world.address
        milter = MilterDaemon(
            base / f"milter{len(started)}",
            keys_dir,
            [DOMAIN],
            world.address,
            mode="enforce",
            sending_ips=[IP],
            helo_name=HELO,
        )
        milter.workdir.mkdir()
        milter.extra = (
            f'[checks]\ndnsbl = ["{ZONE}"]\n'
            f'[keys]\nverify_nameservers = ["{host}:{port}"]\n'
            f"[actions]\n{actions}\n"
            f'[exim]\nsocket = "{socket}"\nsocket_group = "{USER}"\n'
        )
        milter.start()
        milter.wait_for_event("host_refreshed")
        started.append(milter)
        exim = EximInstance(base / "exim", keys_dir, smtp_sink.address, gate_socket=socket)
        exim.workdir.mkdir(mode=0o755, exist_ok=True)
        started.append(exim.start())
        return milter, exim

    yield start
    for each in reversed(started):
        each.stop()


def send(exim: EximInstance, subject: str) -> str:
    message_id = f"{uuid.uuid4().hex}@{DOMAIN}"
    data = (
        f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{message_id}>\r\n\r\nThe report.\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", exim.port, timeout=30) as smtp:
        smtp.sendmail(f"alice@{DOMAIN}", ["bob@example.test"], data)
    return message_id


def received(exim: EximInstance, sink: SmtpSink, message_id: str) -> ReceivedMessage:
    try:
        return sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{exim.logs()}") from None


def exim_lines(milter: MilterDaemon) -> list[dict[str, str]]:
    return [line for line in milter.lines() if line.get("logger") == "exim"]


def test_a_host_in_good_standing_passes(gate: Gate, smtp_sink: SmtpSink) -> None:
    milter, exim = gate("")
    message_id = send(exim, "good standing")
    delivered = received(exim, smtp_sink, message_id)
    assert delivered.header("X-Reputable-Warning") is None
    (line,) = exim_lines(milter)
    assert (line["action"], line["source"], line["spf"], line["ptr"], line["dnsbl"]) == (
        "accept",
        "internal",
        "pass",
        "ok",
        "clean",
    )
    assert line["queue_id"] != "-"


def test_a_listed_ip_freezes_the_message(world: DnsServer, gate: Gate, smtp_sink: SmtpSink) -> None:
    list_ip(world)
    milter, exim = gate("")
    message_id = send(exim, "listed")
    (line,) = exim_lines(milter)
    assert (line["action"], line["dnsbl"]) == ("hold", "listed")
    assert "*** frozen ***" in exim.queue(), exim.logs()
    assert smtp_sink.find("Message-ID", f"<{message_id}>") is None
    assert f"reputable: hold sending IP {IP} is listed on {ZONE}" in exim.mainlog.read_text()


def test_a_reject_action_is_a_550_with_our_text(world: DnsServer, gate: Gate) -> None:
    list_ip(world)
    milter, exim = gate('dnsbl = "reject"')
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(exim, "refused")
    assert refused.value.smtp_code == 550
    error = refused.value.smtp_error
    text = error.decode() if isinstance(error, bytes) else error
    assert f"sending IP {IP} is listed on {ZONE}" in text and "fix:" in text
    assert exim_lines(milter)[0]["action"] == "reject"


def test_a_flag_action_adds_the_header(world: DnsServer, gate: Gate, smtp_sink: SmtpSink) -> None:
    world.set_txt(DOMAIN, "v=spf1 ip4:198.51.100.1 ~all")
    milter, exim = gate("")
    message_id = send(exim, "flagged")
    assert received(exim, smtp_sink, message_id).header("X-Reputable-Warning") == "spf"
    assert exim_lines(milter)[0]["action"] == "flag"


def test_the_socket_down_is_a_451(gate: Gate, smtp_sink: SmtpSink) -> None:
    milter, exim = gate("")
    milter.stop()
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        send(exim, "no gate")
    assert deferred.value.smtp_code == 451
    assert b"reputable is not answering" in deferred.value.smtp_error


def test_a_query_that_cannot_be_read_is_deferred_and_logged(gate: Gate, base: Path) -> None:
    milter, _ = gate("")
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(base / "run" / "exim.sock"))
        client.sendall(b"v1 not base64 at all !\n")
        client.shutdown(socket.SHUT_WR)
        answer = client.makefile("rb").read()
    assert answer == b"defer reputable could not read the query\n"
    (error,) = milter.wait_for_event("protocol_error")
    assert error["detail"].startswith("exim query:")


def test_local_submission_is_judged_through_acl_not_smtp(
    world: DnsServer, gate: Gate, smtp_sink: SmtpSink
) -> None:
    """`exim -bm` (what sendmail is on an Exim host): the same stanza in acl_not_smtp."""
    list_ip(world)
    milter, exim = gate("")
    message_id = f"{uuid.uuid4().hex}@{DOMAIN}"
    data = (
        f"From: root@{DOMAIN}\nTo: bob@example.test\nSubject: cron\n"
        f"Message-ID: <{message_id}>\n\nFrom a local command.\n"
    ).encode()
    exim.submit_local(data, f"root@{DOMAIN}", ["bob@example.test"])
    (line,) = exim_lines(milter)
    assert (line["action"], line["source"], line["client"]) == ("hold", "local", "local")
    assert "*** frozen ***" in exim.queue(), exim.logs()
    assert smtp_sink.find("Message-ID", f"<{message_id}>") is None
