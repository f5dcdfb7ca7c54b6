"""Our log and Postfix's, joined by queue id: each message handed out once, when Postfix is done."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from reputable.report.join import Joiner, Message, may_matter, our_fields
from reputable.report.logline import parse_line

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
QID = "994572305BB"

# One message through the test Postfix and reputable, the two logs interleaved as syslog
# writes them (our line between cleanup's and qmgr's).
SIGNED = [
    f"Dec 03 12:46:37 mta postfix/smtpd[2876]: {QID}: client=unknown[127.0.0.1]",
    f"Dec 03 12:46:37 mta postfix/cleanup[2879]: {QID}: message-id=<fc50@example.com>",
    f"Dec 03 12:46:37 mta reputable[900]: level=info logger=milter queue_id={QID} "
    "action=accept source=internal client=127.0.0.1 from_domain=example.com "
    "dkim=example.com/s2026-11 spf=pass ptr=ok dnsbl=clean dmarc=aligned ms=0.92",
    f"Dec 03 12:46:37 mta postfix/qmgr[2874]: {QID}: from=<alice@example.com>, size=500, "
    "nrcpt=2 (queue active)",
    f"Dec 03 12:46:37 mta postfix/smtp[2880]: {QID}: to=<bob@example.test>, "
    "relay=127.0.0.1[127.0.0.1]:33461, delay=0.13, delays=0.07/0.01/0.05/0, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok)",
    f"Dec 03 12:46:38 mta postfix/smtp[2881]: {QID}: to=<carol@gmail.com>, "
    "relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, delay=1, delays=0/0/0.5/0.5, "
    "dsn=4.7.28, status=deferred (host gmail-smtp-in.l.google.com[142.250.27.26] said: "
    "421-4.7.28 unusual rate 421 4.7.28 a1 - gsmtp (in reply to end of DATA command))",
    f"Dec 03 12:56:38 mta postfix/smtp[2882]: {QID}: to=<carol@gmail.com>, "
    "relay=gmail-smtp-in.l.google.com[142.250.27.26]:25, delay=601, delays=600/0/0.5/0.5, "
    "dsn=2.0.0, status=sent (250 2.0.0 OK b2 - gsmtp)",
    f"Dec 03 12:56:38 mta postfix/qmgr[2874]: {QID}: removed",
]


def join(lines: list[str]) -> tuple[list[Message], list[dict[str, str]], Joiner]:
    messages: list[Message] = []
    events: list[dict[str, str]] = []
    joiner = Joiner(messages.append, lambda time, fields: events.append(fields))
    for line in lines:
        if may_matter(line):  # as the report reads them
            joiner.feed(parse_line(line, NOW))
    return messages, events, joiner


def test_a_message_is_handed_out_once_postfix_removed_it_with_everything_about_it() -> None:
    messages, events, joiner = join(SIGNED)
    assert events == [] and joiner.open == {}
    (message,) = messages
    assert message.queue_id == QID
    assert message.first_seen == datetime(2026, 12, 3, 12, 46, 37, tzinfo=UTC)
    assert message.verdict["action"] == "accept"
    assert message.verdict["dkim"] == "example.com/s2026-11"
    assert [(d.recipient, d.status, d.dsn) for d in message.deliveries] == [
        ("bob@example.test", "sent", "2.0.0"),
        ("carol@gmail.com", "deferred", "4.7.28"),
        ("carol@gmail.com", "sent", "2.0.0"),
    ]
    assert message.deliveries[1].reply.endswith("(in reply to end of DATA command)")


def test_nothing_is_handed_out_before_removed_and_only_open_messages_are_held() -> None:
    messages, _, joiner = join(SIGNED[:-1])
    assert messages == [] and list(joiner.open) == [QID]
    joiner.finish()
    assert [m.queue_id for m in messages] == [QID] and joiner.open == {}


def test_a_held_message_stays_open_and_a_rejected_one_is_done_at_once() -> None:
    held, rejected = "A1B2C3D4E5", "F6A7B8C9D0"
    lines = [
        f"Dec 03 13:00:00 mta postfix/cleanup[1]: {held}: milter-hold: END-OF-MESSAGE from "
        "unknown[127.0.0.1]: milter triggers HOLD action; from=<a@example.com> "
        "to=<b@example.net> proto=ESMTP helo=<mta>",
        f"Dec 03 13:00:01 mta postfix/cleanup[1]: {rejected}: milter-reject: END-OF-MESSAGE "
        "from unknown[127.0.0.1]: 5.7.1 no PTR for 192.0.2.25; from=<a@example.com> "
        "to=<b@example.net> proto=ESMTP helo=<mta>",
    ]
    later = f"Dec 03 13:00:07 mta postfix/qmgr[1]: {QID}: removed"  # past the grace
    messages, _, joiner = join([*lines, later])
    assert [(m.queue_id, m.milter_action, m.milter_reply) for m in messages] == [
        (rejected, "reject", "5.7.1 no PTR for 192.0.2.25")
    ]
    assert joiner.open[held].milter_action == "hold"


def test_our_line_read_after_removed_still_joins_its_message() -> None:
    """Two files merged by time: Postfix's whole seconds sort before our milliseconds."""
    ours = SIGNED[2].split(": ", 1)[1]
    postfix = [line for line in SIGNED if "reputable[" not in line]
    late = f"2026-12-03T12:56:38.250Z mta reputable[900]: {ours}"
    messages, _, joiner = join([*postfix, late])
    (message,) = messages
    assert message.verdict["action"] == "accept" and joiner.open == {}
    assert len(message.deliveries) == 3


def test_a_message_our_log_never_saw_is_handed_out_after_the_grace_or_at_the_end() -> None:
    postfix = [line for line in SIGNED if "reputable[" not in line]
    messages, _, joiner = join(postfix)
    assert messages == []  # removed, but our line may still come
    joiner.finish()
    assert [m.queue_id for m in messages] == [QID] and messages[0].verdict == {}


def test_host_events_come_out_as_they_are_read() -> None:
    line = (
        "2026-12-03T13:00:00+00:00 mta reputable[900]: level=error logger=reputation "
        'event=host_fail check=ptr.192.0.2.25 detail="no PTR record"'
    )
    messages, events, _ = join([line])
    assert messages == []
    assert events == [
        {
            "level": "error",
            "logger": "reputation",
            "event": "host_fail",
            "check": "ptr.192.0.2.25",
            "detail": "no PTR record",
        }
    ]


def test_our_lines_are_read_as_logfmt_json_or_from_the_journal() -> None:
    fields = {"level": "info", "logger": "milter", "queue_id": QID, "action": "hold"}
    logfmt = "ts=2026-12-03T13:00:00.000Z level=info logger=milter queue_id=994572305BB action=hold"
    for text in (logfmt, "<6>" + logfmt, json.dumps(fields)):
        parsed = our_fields(parse_line(text, NOW))
        assert parsed is not None
        # A message's line: what the report reads of it (VERDICT_FIELDS) in every form.
        assert (parsed["queue_id"], parsed["action"]) == (QID, "hold")
    quoted = logfmt + ' detail="ptr.192.0.2.25: no PTR record"'
    parsed = our_fields(parse_line(quoted, NOW))
    assert parsed is not None and parsed["detail"] == "ptr.192.0.2.25: no PTR record"
    assert our_fields(parse_line("level=info but no logger", NOW)) is None
    assert our_fields(parse_line('{"not": "ours"}', NOW)) is None


# An inbound message's line once verified (source=external): four results, one word each.
INBOUND = (
    "Dec 03 13:10:00 mx reputable[900]: level=info logger=milter queue_id=4F2A81C0D3 "
    "action=accept source=external client=198.51.100.7 from_domain=example.org dkim=none "
    "reason=not_outbound dkim_in=pass spf_in=softfail dmarc_in=pass arc_in=none ms=1.20"
)
RESULTS = {"dkim_in": "pass", "spf_in": "softfail", "dmarc_in": "pass", "arc_in": "none"}


def test_an_inbound_line_is_read_for_its_results_in_logfmt_quoted_logfmt_and_json() -> None:
    text = INBOUND.split(": ", 1)[1]
    as_json = json.dumps(
        {"ts": "2026-12-03T13:10:00Z", **dict(f.split("=", 1) for f in text.split())}
    )
    for line in (INBOUND, INBOUND + ' detail="ARC chain of 2 sets"', as_json):
        parsed = our_fields(parse_line(line, NOW))
        assert parsed is not None
        assert {name: parsed.get(name) for name in RESULTS} == RESULTS, line
        assert (parsed["queue_id"], parsed["source"], parsed["dkim"]) == (
            "4F2A81C0D3",
            "external",
            "none",
        )


def test_lines_without_results_are_read_as_before() -> None:
    older = INBOUND.replace(" dkim_in=pass spf_in=softfail dmarc_in=pass arc_in=none", "")
    parsed = our_fields(parse_line(older, NOW))
    assert parsed == {
        "queue_id": "4F2A81C0D3",
        "action": "accept",
        "source": "external",
        "dkim": "none",
        "reason": "not_outbound",
    }
    signed = our_fields(parse_line(SIGNED[2], NOW))
    assert signed is not None and not [name for name in signed if name.endswith("_in")]
    # Only an inbound line is looked at for them: an outbound one is not searched at all.
    outbound = INBOUND.replace("source=external", "source=internal")
    parsed = our_fields(parse_line(outbound, NOW))
    assert parsed is not None and not [name for name in parsed if name.endswith("_in")]
