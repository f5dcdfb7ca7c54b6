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
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from reputable.log import Field, LogfmtFormatter
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix import PostfixFactory, PostfixInstance
from tests.integration.harness.scratch import ScratchRecords
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


def host_in_good_standing(records: ScratchRecords, dns_server: DnsServer, keys: Path) -> None:
    """A key for example.com (selector s1) and the DNS of a host in good standing: PTR and
    FCrDNS of 192.0.2.25, SPF, DMARC and the key's record, so that our log has nothing to
    say against the host."""
    config = Config(signing=SigningConfig(domains=("example.com",), keys=keys))
    assert new_command(config, "example.com", "s1", "rsa", 2048, False, out=io.StringIO()) == 0
    (stored,) = read_store(keys).keys
    records.ptr("192.0.2.25", "mta.example.com")
    records.a("mta.example.com", "192.0.2.25")
    records.txt("example.com", "v=spf1 ip4:192.0.2.25 -all")
    records.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    records.own(record_name("s1", "example.com"))
    dns_server.set_txt(
        record_name("s1", "example.com"),
        *split_strings(record_value(stored.key.algorithm, stored.key.private_key)),
    )


@pytest.fixture
def logs(
    dns_server: DnsServer,
    records: ScratchRecords,
    tmp_path: Path,
    postfix_factory: PostfixFactory,
    smtp_sink: SmtpSink,
) -> Iterator[tuple[PostfixInstance, MilterDaemon]]:
    keys = tmp_path / "keys"
    host_in_good_standing(records, dns_server, keys)
    milter = MilterDaemon(tmp_path, keys, ["example.com"], dns_server.address).start()
    refreshed = milter.wait_for_event("host_refreshed")
    assert not [line for line in milter.lines() if line.get("event") == "host_fail"], refreshed
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


def one_message(postfix_log: Path, milter_log: Path, subject: str, into: Path) -> list[Path]:
    """The two logs cut down to one message's lines (and the lines of no message)."""
    postfix_lines = postfix_log.read_text().splitlines()
    queue_ids = {
        found[1]
        for line in postfix_lines
        if (found := re.search(r": (\w+): message-id=<(\w+)@example\.com>", line))
        and found[2] == subject
    }
    assert len(queue_ids) == 1
    kept_postfix = [
        line
        for line in postfix_lines
        if not (found := re.search(r"\]: (\w{5,}): ", line)) or found[1] in queue_ids
    ]
    kept_milter = [
        line
        for line in milter_log.read_text().splitlines()
        if not (found := re.search(r" queue_id=(\S+)", line)) or found[1] in queue_ids
    ]
    into.mkdir()
    (into / "mail.log").write_text("\n".join(kept_postfix) + "\n")
    (into / "mail.log.1").write_text("\n".join(kept_milter) + "\n")
    return [into / "mail.log", into / "mail.log.1"]


def readme_block(first: str) -> list[str]:
    """The lines of the README's one code block whose first line starts with `first`."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [
        found[1].splitlines()
        for found in re.finditer(r"^```[a-z]*\n(.*?)^```", readme, re.S | re.M)
        if found[1].startswith(first)
    ]
    assert len(blocks) == 1, first
    return [line for line in blocks[0] if line.strip()]


def run_cron_line(line: str, logs: list[Path]) -> subprocess.CompletedProcess[str]:
    """A cron.d line's command as cron runs it: /bin/sh -c, cron's PATH, no `%` in it."""
    minute, hour, day, month, weekday, user, command = line.split(None, 6)
    assert (minute, hour, day, month, weekday, user) == ("0", "7", "*", "*", "*", "root")
    assert "%" not in command  # cron would turn it into a newline
    command = command.replace("/var/log/mail.log /var/log/mail.log.1", " ".join(map(str, logs)))
    assert " ".join(map(str, logs)) in command
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    return subprocess.run(
        ["/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": path, "HOME": "/root", "SHELL": "/bin/sh"},
        check=False,
    )


def test_exit_codes_and_the_readme_cron_line(
    logs: tuple[PostfixInstance, MilterDaemon], tmp_path: Path
) -> None:
    postfix, milter = logs
    cron = readme_block("# /etc/cron.d/reputable-report")
    assert cron[1] == "MAILTO=postmaster"
    for subject, expected_code in (("accepted", 0), ("deferred", 1), ("refused", 2)):
        cut = one_message(postfix.log_path, milter.log_path, subject, tmp_path / subject)
        code, data, _ = report(*map(str, cut))
        assert data["messages"]["total"] == 1  # type: ignore[index]
        assert code == expected_code, data
        mailed = run_cron_line(cron[2], cut)
        assert mailed.stderr == ""
        if expected_code == 0:
            assert mailed.returncode == 0 and mailed.stdout == ""  # a quiet day sends no mail
        else:
            assert mailed.returncode == 0
            assert "1 messages, 1 signed" in mailed.stdout
            assert f"Result: {'warnings' if expected_code == 1 else 'problems'}." in mailed.stdout


def test_the_readme_grep_patterns_pick_the_lines_they_name(
    logs: tuple[PostfixInstance, MilterDaemon], tmp_path: Path
) -> None:
    """The README's patterns on a syslog file of the real lines and of a gate hold and a listing."""
    postfix, milter = logs
    milter_lines = milter.log_path.read_text().splitlines()
    made = []
    for fields in (
        {Field.QUEUE_ID: "4Q1", Field.ACTION: "hold", Field.SOURCE: "internal"},
        {Field.EVENT: "host_fail", Field.CHECK: "dnsbl.zen.spamhaus.org.192.0.2.25"},
        {Field.EVENT: "key_retired", Field.DOMAIN: "example.com", Field.SELECTOR: "s0"},
    ):
        record = logging.LogRecord("reputable.milter", logging.WARNING, "", 0, "", None, None)
        record.reputable_fields = fields
        made.append(LogfmtFormatter(timestamps=False).format(record))
    syslog = [line.split(" ", 1)[1] for line in milter_lines] + made
    mail_log = tmp_path / "mail.log"
    mail_log.write_text(
        postfix.log_path.read_text()
        + "".join(f"Dec  3 07:00:00 mta reputable[900]: {line}\n" for line in syslog)
    )
    expected = {
        "host_fail": [made[1]],
        "hold|reject|tempfail": [made[0]],
        "key_": [made[2]],
    }
    greps = [line for line in readme_block("grep -E") if line.startswith("grep -E ")]
    assert len(greps) == 3
    for grep in greps:
        command = grep.split("  #", 1)[0].replace("/var/log/mail.log", str(mail_log))
        done = subprocess.run(
            ["/bin/sh", "-c", command], capture_output=True, text=True, timeout=10, check=False
        )
        found = [line.split("]: ", 1)[1] for line in done.stdout.splitlines()]
        key = next(k for k in expected if k in grep)
        assert found == expected[key], grep
