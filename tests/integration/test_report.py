"""`reputable report` on the logs a real Postfix and a real `reputable milter` wrote.

Mail goes through Postfix (its maillog_file) and the milter (its own log file)
to a sink that answers as receivers do: it accepts, then rejects with Gmail's
multi-line 550-5.7.26 DMARC reply, then defers with Microsoft's 451 4.7.650.
The report must count every message and classify every reply, from the two
files as they are, and from the same lines interleaved as syslog writes them,
rotated and gzipped.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix import PostfixFactory, PostfixInstance
from tests.integration.harness.sink import SmtpSink

pytestmark = pytest.mark.integration

GMAIL_DMARC = (
    "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's\r\n"
    "550-5.7.26 DMARC policy. Please contact the administrator of example.com domain.\r\n"
    "550 5.7.26 a1si2 - gsmtp"
)
MICROSOFT_RATE = (
    "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP "
    "reputation. For e-mail delivery information, see https://postmaster.live.com (S843)"
)


def message(subject: str) -> bytes:
    return (
        f"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.com>\r\n\r\nHello.\r\n"
    ).encode()


@pytest.fixture
def logs(
    dns_server: DnsServer, tmp_path: Path, postfix_factory: PostfixFactory, smtp_sink: SmtpSink
) -> Iterator[tuple[PostfixInstance, MilterDaemon]]:
    keys = tmp_path / "keys"
    config = Config(signing=SigningConfig(domains=("example.com",), keys=keys))
    assert new_command(config, "example.com", "s1", "rsa", 2048, False, out=io.StringIO()) == 0
    milter = MilterDaemon(tmp_path, keys, ["example.com"], dns_server.address).start()
    postfix = postfix_factory(milter=milter.postfix_socket)
    try:
        postfix.submit_smtp(message("accepted"), "alice@example.com", ["bob@example.net"])
        postfix.wait_for_log(r"status=sent")
        smtp_sink.set_reply(GMAIL_DMARC)
        # A null sender: no non-delivery notice comes back through the sink.
        postfix.submit_smtp(message("refused"), "", ["carol@example.net"])
        postfix.wait_for_log(r"status=bounced")
        smtp_sink.set_reply(MICROSOFT_RATE)
        postfix.submit_smtp(message("deferred"), "", ["dave@example.net"])
        postfix.wait_for_log(r"status=deferred")
        milter.wait_for_messages(3)
        yield postfix, milter
    finally:
        smtp_sink.set_reply(None)
        milter.stop()


def report(*arguments: str) -> tuple[int, dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-m", "reputable", "report", "--json", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == ""
    return done.returncode, json.loads(done.stdout), done.stdout


def check(code: int, data: dict[str, object]) -> None:
    assert data["messages"] == {
        "total": 3,
        "signed": 3,
        "unsigned": {},
        "actions": {"accept": 3},
    }
    assert data["deliveries"] == {
        "other": {"sent": 1, "deferred": 0, "bounced": 0},
        "Google": {"sent": 0, "deferred": 0, "bounced": 1},
        "Microsoft": {"sent": 0, "deferred": 1, "bounced": 0},
    }
    signals = data["signals"]
    assert isinstance(signals, list)
    assert [(s["receiver"], s["code"], s["class"], s["count"]) for s in signals] == [
        ("Google", "5.7.26", "dmarc", 1),
        ("Microsoft", "4.7.650", "rate", 1),
    ]
    assert "550-5.7.26" in signals[0]["example"] and signals[0]["fix"]
    assert code == 2  # bounced for a signal


def test_the_report_counts_every_message_and_reads_every_reply(
    logs: tuple[PostfixInstance, MilterDaemon],
) -> None:
    postfix, milter = logs
    code, data, _ = report(str(postfix.log_path), str(milter.log_path))
    check(code, data)
    text = subprocess.run(
        [sys.executable, "-m", "reputable", "report", str(postfix.log_path), str(milter.log_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert text.returncode == 2
    assert "3 messages, 3 signed" in text.stdout
    assert "Google 5.7.26 [dmarc]" in text.stdout
    assert "Microsoft 4.7.650 [rate]" in text.stdout


def test_the_same_lines_interleaved_as_syslog_writes_them_rotated_and_gzipped(
    logs: tuple[PostfixInstance, MilterDaemon], tmp_path: Path
) -> None:
    postfix, milter = logs
    stamped: list[tuple[datetime, str]] = []
    year = datetime.now(UTC).year
    for line in postfix.log_path.read_text().splitlines():
        stamp = datetime.strptime(f"{year} {line[:15]}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)
        stamped.append((stamp, line))
    for line in milter.log_path.read_text().splitlines():
        ts = line.split(" ", 1)[0].removeprefix("ts=")
        stamp = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        syslog = f"{stamp:%b %d %H:%M:%S} mta reputable[900]: {line.split(' ', 1)[1]}"
        stamped.append((stamp, syslog))
    lines = [line for _, line in sorted(stamped, key=lambda item: item[0])]
    half = len(lines) // 2
    older, newer = tmp_path / "mail.log.1.gz", tmp_path / "mail.log"
    with gzip.open(older, "wt") as handle:
        handle.write("\n".join(lines[:half]) + "\n")
    newer.write_text("\n".join(lines[half:]) + "\n")
    code, data, _ = report(str(newer), str(older))  # named newest first: read oldest first
    check(code, data)
