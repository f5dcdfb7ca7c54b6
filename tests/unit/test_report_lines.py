"""Mail log lines as syslog, Postfix's maillog_file, ISO stamps, RFC 5424 and journalctl write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from reputable.report.logline import LineReader, LogLine, parse_line
from reputable.report.postfix_lines import Kind, parse_postfix

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
SENT = (
    "994572305BB: to=<bob@example.test>, relay=127.0.0.1[127.0.0.1]:33461, delay=0.13, "
    "delays=0.07/0.01/0.05/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: kept by the test sink)"
)


@pytest.mark.parametrize(
    ("line", "time"),
    [
        # Postfix's maillog_file (zero-padded day), as the test Postfix writes it
        (f"Dec 03 12:46:37 mta postfix/smtp[2880]: {SENT}", datetime(2026, 12, 3, 12, 46, 37)),
        # traditional syslog (space-padded day), fractional seconds
        (f"Dec  3 12:46:37 mta postfix/smtp[2880]: {SENT}", datetime(2026, 12, 3, 12, 46, 37)),
        (
            f"Dec  3 12:46:37.250 mta postfix/smtp[2880]: {SENT}",
            datetime(2026, 12, 3, 12, 46, 37, 250000),
        ),
        # rsyslog's high-precision format and journalctl -o short-iso
        (
            f"2026-12-03T12:46:37.250000+00:00 mta postfix/smtp[2880]: {SENT}",
            datetime(2026, 12, 3, 12, 46, 37, 250000),
        ),
        (
            f"2026-12-03T13:46:37+0100 mta postfix/smtp[2880]: {SENT}",
            datetime(2026, 12, 3, 12, 46, 37),
        ),
        # RFC 5424, with and without structured data
        (
            f"<22>1 2026-12-03T12:46:37Z mta postfix/smtp 2880 - - {SENT}",
            datetime(2026, 12, 3, 12, 46, 37),
        ),
        (
            f'<22>1 2026-12-03T12:46:37Z mta postfix/smtp 2880 - [meta x="a\\]b"] {SENT}',
            datetime(2026, 12, 3, 12, 46, 37),
        ),
    ],
)
def test_every_shape_gives_the_time_the_program_and_the_text(line: str, time: datetime) -> None:
    parsed = parse_line(line + "\n", NOW)
    assert parsed == LogLine(time.replace(tzinfo=UTC), "postfix/smtp", SENT)


def test_journalctl_cat_is_text_alone_and_still_a_postfix_event() -> None:
    parsed = parse_line(SENT, NOW)
    assert parsed == LogLine(None, "", SENT)
    event = parse_postfix(parsed.program, parsed.text)
    assert event is not None and event.kind is Kind.DELIVERY


def test_a_year_less_stamp_ahead_of_now_is_last_year_s() -> None:
    january = datetime(2027, 1, 2, 8, 0, tzinfo=UTC)
    parsed = parse_line("Dec 31 23:59:59 mta postfix/qmgr[1]: 994572305BB: removed", january)
    assert parsed.time == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_a_year_less_stamp_is_read_in_the_given_zone() -> None:
    paris = timezone(timedelta(hours=1))
    parsed = parse_line("Dec  3 13:46:37 mta postfix/qmgr[1]: 994572305BB: removed", NOW, paris)
    assert parsed.time == datetime(2026, 12, 3, 12, 46, 37, tzinfo=UTC)


@pytest.mark.parametrize(
    "line",
    ["", "garbage", "Feb 30 10:00:00 mta postfix/qmgr[1]: x", "Dec  3 99:99:99 h p: t"],
)
def test_any_other_line_is_text_never_an_error(line: str) -> None:
    parsed = parse_line(line, NOW)
    assert isinstance(parsed, LogLine)


def test_a_delivery_keeps_its_fields_and_the_whole_reply() -> None:
    text = (
        "3Pt2mN2VXxznjll: to=<alice@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, "
        "delay=1.2, delays=0.1/0/0.6/0.5, dsn=5.7.26, status=bounced (host "
        "gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.7.26 Unauthenticated email from "
        "example.com is not accepted due to domain's DMARC policy (in reply to end of DATA command))"
    )
    event = parse_postfix("postfix/smtp", text)
    assert event is not None
    assert (event.queue_id, event.kind) == ("3Pt2mN2VXxznjll", Kind.DELIVERY)
    assert event.fields["to"] == "alice@gmail.com"
    assert event.fields["relay"] == "gmail-smtp-in.l.google.com[142.250.27.26]:25"
    assert (event.fields["dsn"], event.fields["status"]) == ("5.7.26", "bounced")
    assert event.reply.startswith("host gmail-smtp-in.l.google.com[142.250.27.26] said: 550-5.7.26")
    assert event.reply.endswith("(in reply to end of DATA command)")


def test_a_second_instance_s_programs_are_postfix_too() -> None:
    event = parse_postfix("postfix-out/smtp", SENT)
    assert event is not None and event.fields["status"] == "sent"


@pytest.mark.parametrize(
    ("program", "text", "kind", "fields"),
    [
        (
            "postfix/smtpd",
            "994572305BB: client=unknown[127.0.0.1]",
            Kind.CLIENT,
            {"client": "unknown[127.0.0.1]"},
        ),
        (
            "postfix/qmgr",
            "994572305BB: from=<alice@example.com>, size=500, nrcpt=1 (queue active)",
            Kind.QUEUED,
            {"from": "alice@example.com", "size": "500", "nrcpt": "1"},
        ),
        ("postfix/qmgr", "994572305BB: removed", Kind.REMOVED, {}),
        (
            "postfix/bounce",
            "994572305BB: sender non-delivery notification: 3D2C12305BC",
            Kind.BOUNCE,
            {"notice": "3D2C12305BC"},
        ),
        (
            "postfix/cleanup",
            "994572305BB: milter-hold: END-OF-MESSAGE from unknown[127.0.0.1]: milter triggers "
            "HOLD action; from=<alice@example.com> to=<bob@example.net> proto=ESMTP helo=<mta>",
            Kind.MILTER,
            {
                "action": "hold",
                "stage": "END-OF-MESSAGE",
                "client": "unknown[127.0.0.1]",
                "from": "alice@example.com",
                "to": "bob@example.net",
            },
        ),
        (
            "postfix/cleanup",
            "994572305BB: milter-reject: END-OF-MESSAGE from unknown[127.0.0.1]: 5.7.1 no PTR; "
            "from=<alice@example.com> to=<bob@example.net> proto=ESMTP helo=<mta>",
            Kind.MILTER,
            {
                "action": "reject",
                "stage": "END-OF-MESSAGE",
                "client": "unknown[127.0.0.1]",
                "from": "alice@example.com",
                "to": "bob@example.net",
            },
        ),
    ],
)
def test_each_postfix_event_of_a_message(
    program: str, text: str, kind: Kind, fields: dict[str, str]
) -> None:
    event = parse_postfix(program, text)
    assert event is not None
    assert (event.queue_id, event.kind, event.fields) == ("994572305BB", kind, fields)


def test_a_milter_reply_is_kept() -> None:
    event = parse_postfix(
        "postfix/cleanup",
        "994572305BB: milter-reject: END-OF-MESSAGE from unknown[127.0.0.1]: 5.7.1 no PTR; "
        "from=<alice@example.com> to=<bob@example.net> proto=ESMTP helo=<mta>",
    )
    assert event is not None and event.reply == "5.7.1 no PTR"


@pytest.mark.parametrize(
    ("program", "text"),
    [
        ("postfix/smtpd", "warning: hostname mta does not resolve to address 127.0.0.1"),
        ("postfix/smtpd", "connect from unknown[127.0.0.1]"),
        ("postfix/master", "daemon started -- version 3.7.11"),
        ("opendkim", "994572305BB: DKIM-Signature field added (s=mail, d=example.com)"),
        ("postfix/cleanup", "994572305BB: something new"),
    ],
)
def test_lines_about_no_queued_message_are_none(program: str, text: str) -> None:
    assert parse_postfix(program, text) is None


def test_a_long_queue_id_is_one_and_a_word_is_not() -> None:
    event = parse_postfix("postfix/qmgr", "3Pt2mN2VXxznjll: removed")
    assert event is not None and event.queue_id == "3Pt2mN2VXxznjll"
    assert parse_postfix("postfix/smtp", "warningmessage: removed") is None


def test_one_reader_over_a_log_reads_each_stamp_as_a_line_alone_would() -> None:
    """The reader keeps each minute it has read; every line's time stays its own."""
    stamps = [
        "Dec  3 14:05:01",
        "Dec  3 14:05:01",
        "Dec  3 14:05:59",
        "Dec  3 14:06:00",
        "Dec  3 14:05:30",  # an older minute again (two files merged)
        "Dec 31 23:59:59",  # ahead of NOW by weeks: last year
        "Jan  1 00:00:00",
        "Feb 29 12:00:00",  # no such day this year
        "Dec  3 14:05:60",  # no such second
    ]
    reader = LineReader(NOW)
    for stamp in stamps:
        line = f"{stamp} mta postfix/qmgr[1]: 994572305BB: removed"
        assert reader.read(line) == parse_line(line, NOW), stamp
