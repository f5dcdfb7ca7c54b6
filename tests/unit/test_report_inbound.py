"""`reputable report` on inbound mail: each verification result counted, from our lines in
logfmt or JSON joined to Postfix's by queue id; no inbound block when no line carries them."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from reputable.report.command import report_command

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def ours(stamp: str, fields: str) -> str:
    return f"Dec  3 {stamp} mx reputable[900]: level=info logger=milter {fields}"


def received(qid: str, stamp: str, client: str, sender: str) -> list[str]:
    return [
        f"Dec  3 {stamp} mx postfix/smtpd[3101]: {qid}: client={client}",
        f"Dec  3 {stamp} mx postfix/cleanup[3102]: {qid}: message-id=<{qid}@{sender}>",
    ]


def delivered(qid: str, stamp: str, sender: str, size: int) -> list[str]:
    return [
        f"Dec  3 {stamp} mx postfix/qmgr[1990]: {qid}: from=<news@{sender}>, size={size}, "
        "nrcpt=1 (queue active)",
        f"Dec  3 {stamp} mx postfix/local[3104]: {qid}: to=<bob@example.com>, relay=local, "
        "delay=0.4, delays=0.1/0/0/0.3, dsn=2.0.0, status=sent (delivered to mailbox)",
        f"Dec  3 {stamp} mx postfix/qmgr[1990]: {qid}: removed",
    ]


# Postfix's log with our logfmt lines in it (syslog), as a server receiving mail writes it.
VERIFIED = [
    # Signed and aligned: everything passes.
    *received("4F2A81C0D3", "13:10:00", "mail.example.org[198.51.100.7]", "example.org"),
    ours(
        "13:10:00",
        "queue_id=4F2A81C0D3 action=accept source=external client=198.51.100.7 "
        "from_domain=example.org dkim=none reason=not_outbound dkim_in=pass spf_in=pass "
        "dmarc_in=pass arc_in=none ms=1.20",
    ),
    *delivered("4F2A81C0D3", "13:10:01", "example.org", 2210),
    # Unsigned, from a domain that publishes neither SPF nor DMARC; a quoted field in the line.
    *received("5B3C92D1E4", "13:20:00", "smtp.example.net[203.0.113.5]", "example.net"),
    ours(
        "13:20:00",
        "queue_id=5B3C92D1E4 action=accept source=external client=203.0.113.5 "
        "from_domain=example.net dkim=none reason=not_outbound dkim_in=none spf_in=none "
        'dmarc_in=none arc_in=none detail="no Authentication-Results to trust" ms=0.85',
    ),
    *delivered("5B3C92D1E4", "13:20:01", "example.net", 1840),
    # Forged From: DMARC fails under p=reject and is enforced; Postfix logs the milter's reject.
    *received("6C4DA3E2F5", "13:30:00", "bad.example[192.0.2.66]", "example.org"),
    ours(
        "13:30:00",
        "queue_id=6C4DA3E2F5 action=reject source=external client=192.0.2.66 "
        "from_domain=example.org dkim=none reason=not_outbound dkim_in=none spf_in=fail "
        "dmarc_in=fail arc_in=none ms=2.10",
    ),
    "Dec  3 13:30:00 mx postfix/cleanup[3102]: 6C4DA3E2F5: milter-reject: END-OF-MESSAGE "
    "from bad.example[192.0.2.66]: 5.7.1 DMARC policy of example.org rejects this message; "
    "from=<ceo@example.org> to=<bob@example.com> proto=ESMTP helo=<bad.example>",
]
UNVERIFIED = [
    # Written by a version that did not verify: counted as a message, not in the block.
    *received("8E6FC5F4A7", "13:50:00", "mx.example.com[198.51.100.9]", "example.com"),
    ours(
        "13:50:00",
        "queue_id=8E6FC5F4A7 action=accept source=external client=198.51.100.9 "
        "from_domain=example.com dkim=none reason=not_outbound ms=0.05",
    ),
    *delivered("8E6FC5F4A7", "13:50:01", "example.com", 990),
    # Outbound, signed, sent to Gmail.
    *received("9F7AD6A5B8", "14:00:00", "unknown[192.0.2.10]", "example.com"),
    ours(
        "14:00:00",
        "queue_id=9F7AD6A5B8 action=accept source=internal client=192.0.2.10 "
        "from_domain=example.com dkim=example.com/s2026 spf=pass ptr=ok dnsbl=clean "
        "dmarc=aligned ms=0.92",
    ),
    "Dec  3 14:00:01 mx postfix/qmgr[1990]: 9F7AD6A5B8: from=<alice@example.com>, size=700, "
    "nrcpt=1 (queue active)",
    "Dec  3 14:00:01 mx postfix/smtp[3105]: 9F7AD6A5B8: to=<carol@gmail.com>, "
    "relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, delay=0.5, delays=0/0/0.2/0.3, "
    "dsn=2.0.0, status=sent (250 2.0.0 OK a1 - gsmtp)",
    "Dec  3 14:00:01 mx postfix/qmgr[1990]: 9F7AD6A5B8: removed",
]
SYSLOG = VERIFIED + UNVERIFIED
# A message whose line is in our own log file, in JSON ([log] format = "json"), the mailing
# list's ARC vouching for the DKIM signature its footer broke.
JSON_QID = "7D5EB4F3A6"
OUR_FILE = [
    json.dumps(
        {
            "ts": "2026-12-03T13:40:00Z",
            "level": "info",
            "logger": "milter",
            "queue_id": JSON_QID,
            "action": "accept",
            "source": "external",
            "client": "198.51.100.20",
            "from_domain": "example.org",
            "dkim": "none",
            "reason": "not_outbound",
            "dkim_in": "fail",
            "spf_in": "softfail",
            "dmarc_in": "fail",
            "arc_in": "pass",
            "ms": "3.40",
        }
    )
]
SYSLOG_LIST = [
    *received(JSON_QID, "13:40:00", "lists.example.net[198.51.100.20]", "lists.example.net"),
    *delivered(JSON_QID, "13:40:01", "lists.example.net", 5120),
]


def report(tmp_path: Path, syslog: list[str], own: list[str], as_json: bool) -> tuple[int, str]:
    mail_log, own_log = tmp_path / "mail.log", tmp_path / "reputable.log"
    mail_log.write_text("\n".join(syslog) + "\n")
    own_log.write_text("".join(line + "\n" for line in own))
    out = io.StringIO()
    code = report_command([str(mail_log), str(own_log)], None, None, None, as_json, out, NOW)
    return code, out.getvalue()


def test_inbound_results_are_counted_from_logfmt_and_json_lines_joined_to_postfix(
    tmp_path: Path,
) -> None:
    _, out = report(tmp_path, SYSLOG + SYSLOG_LIST, OUR_FILE, as_json=True)
    data = json.loads(out)
    assert data["inbound"] == {
        "messages": 4,
        "dkim": {"none": 2, "pass": 1, "fail": 1},
        "spf": {"pass": 1, "none": 1, "fail": 1, "softfail": 1},
        "dmarc": {"fail": 2, "pass": 1, "none": 1},
        "arc": {"none": 3, "pass": 1},
    }
    assert data["messages"] == {
        "total": 6,
        "signed": 1,
        "unsigned": {"not_outbound": 5},
        "actions": {"accept": 5, "reject": 1},
    }
    assert data["deliveries"] == {
        "other": {"sent": 4, "deferred": 0, "bounced": 0},
        "Google": {"sent": 1, "deferred": 0, "bounced": 0},
    }


def test_the_text_report_shows_an_inbound_verification_block(tmp_path: Path) -> None:
    _, text = report(tmp_path, SYSLOG + SYSLOG_LIST, OUR_FILE, as_json=False)
    lines = text.splitlines()
    start = lines.index("Inbound verification: 4 messages")
    assert lines[start - 1] == "" and lines[start + 5] == ""
    assert lines[start + 1 : start + 5] == [
        "  dkim: none 2, pass 1, fail 1",
        "  spf: pass 1, none 1, fail 1, softfail 1",
        "  dmarc: fail 2, pass 1, none 1",
        "  arc: none 3, pass 1",
    ]


def test_no_inbound_block_when_no_line_carries_results(tmp_path: Path) -> None:
    code, text = report(tmp_path, UNVERIFIED, [], as_json=False)
    assert "Inbound" not in text and "_in" not in text
    assert text.startswith("2026-12-03 13:50 to 2026-12-03 14:00: 2 messages, 1 signed\n")
    assert code == 0
    _, out = report(tmp_path, UNVERIFIED, [], as_json=True)
    data = json.loads(out)
    assert data["inbound"]["messages"] == 0
    assert data["messages"]["total"] == 2
