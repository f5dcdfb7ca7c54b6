"""The report's counts, signal groups (worst first, nothing dropped), JSON schema and exit code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reputable.report.command import render
from reputable.report.join import Delivery, Message
from reputable.report.summary import Summary

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
GMAIL = "gmail-smtp-in.l.google.com[142.250.27.26]:25"
OUTLOOK = "hotmail-com.olc.protection.outlook.com[104.47.12.33]:25"
SINK = "127.0.0.1[127.0.0.1]:2525"
S3150 = (
    "host hotmail-com.olc.protection.outlook.com[104.47.12.33] said: 550 5.7.1 Unfortunately, "
    "messages from [{ip}] weren't sent. Please contact your Internet service provider since "
    "part of their network is on our block list (S3150). (in reply to MAIL FROM command)"
)
RATE = "host gmail-smtp-in.l.google.com[142.250.27.26] said: 421 4.7.28 unusual rate - gsmtp"
FULL = "host mx.example.net[198.51.100.7] said: 452 4.2.2 Mailbox full ({ip}) (in reply to RCPT TO command)"


def message(qid: str, minutes: int, verdict: dict[str, str], *deliveries: Delivery) -> Message:
    return Message(
        qid, T0 + timedelta(minutes=minutes), verdict=verdict, deliveries=list(deliveries)
    )


def delivery(relay: str, status: str, reply: str = "", minutes: int = 0) -> Delivery:
    return Delivery("r@x", relay, status, "", reply, T0 + timedelta(minutes=minutes))


SIGNED = {"action": "accept", "dkim": "example.com/s1"}


def test_counts_window_and_deliveries_by_receiver() -> None:
    summary = Summary()
    summary.add(
        message("A1", 0, SIGNED, delivery(SINK, "sent"), delivery(GMAIL, "sent", minutes=5))
    )
    summary.add(message("A2", 10, {"action": "accept", "dkim": "none", "reason": "not_outbound"}))
    summary.add(message("A3", 20, {}))  # a message our log never saw
    data = summary.as_json()
    assert data["window"] == {
        "from": T0.isoformat(),
        "until": (T0 + timedelta(minutes=20)).isoformat(),
    }
    assert data["messages"] == {
        "total": 3,
        "signed": 1,
        "unsigned": {"not_outbound": 1, "no_reputable_line": 1},
        "actions": {"accept": 2},
    }
    assert data["deliveries"] == {
        "other": {"sent": 1, "deferred": 0, "bounced": 0},
        "Google": {"sent": 1, "deferred": 0, "bounced": 0},
    }
    assert data["signals"] == [] and summary.exit_code() == 0


def test_signals_are_grouped_worst_first_and_unknown_replies_are_kept_by_text() -> None:
    summary = Summary()
    summary.add(
        message(
            "B1",
            0,
            SIGNED,
            delivery(GMAIL, "deferred", RATE, 1),
            delivery(GMAIL, "deferred", RATE, 2),
        )
    )
    summary.add(
        message("B2", 5, SIGNED, delivery(OUTLOOK, "bounced", S3150.format(ip="192.0.2.25"), 6))
    )
    summary.add(
        message("B3", 7, SIGNED, delivery(OUTLOOK, "bounced", S3150.format(ip="192.0.2.26"), 8))
    )
    summary.add(
        message(
            "B4",
            9,
            SIGNED,
            delivery(
                "mx.example.net[198.51.100.7]:25", "deferred", FULL.format(ip="192.0.2.25"), 9
            ),
        )
    )
    summary.add(
        message(
            "B5",
            9,
            SIGNED,
            delivery(
                "mx.example.net[198.51.100.7]:25", "deferred", FULL.format(ip="192.0.2.26"), 9
            ),
        )
    )
    signals = summary.as_json()["signals"]
    assert isinstance(signals, list)
    assert [(s["receiver"], s["code"], s["class"], s["count"]) for s in signals] == [
        ("Microsoft", "S3150", "reputation", 2),
        ("Google", "4.7.28", "rate", 2),
        ("other", "4.2.2", "other", 1 + 1),
    ]
    blocked = signals[0]
    assert blocked["first"] == (T0 + timedelta(minutes=6)).isoformat()
    assert blocked["last"] == (T0 + timedelta(minutes=8)).isoformat()
    assert "sender.office.com" in blocked["fix"]
    assert summary.exit_code() == 2  # bounced for a reputation signal


def test_exit_codes_follow_what_went_wrong() -> None:
    deferred = Summary()
    deferred.add(message("C1", 0, SIGNED, delivery(GMAIL, "deferred", RATE)))
    assert deferred.exit_code() == 1

    flagged = Summary()
    flagged.add(message("C2", 0, {"action": "flag", "dkim": "example.com/s1"}))
    assert flagged.exit_code() == 1

    held = Summary()
    held.add(message("C3", 0, {"action": "hold", "dkim": "example.com/s1"}))
    assert held.exit_code() == 2

    refused_inbound = Summary()  # received mail refused for failing DMARC: not this host's mail
    refused_inbound.add(
        message("C5", 0, {**inbound("fail", "fail", "fail", "none"), "action": "reject"})
    )
    refused_inbound.add(
        message("C6", 1, {**inbound("fail", "fail", "fail", "none"), "action": "hold"})
    )
    assert refused_inbound.exit_code() == 0
    inbound_counts = refused_inbound.as_json()["inbound"]
    assert isinstance(inbound_counts, dict) and inbound_counts["dmarc"] == {"fail": 2}

    unknown_only = Summary()
    unknown_only.add(message("C4", 0, SIGNED, delivery(SINK, "deferred", FULL.format(ip="x"))))
    assert unknown_only.exit_code() == 0  # kept in the report, but no signal

    host = Summary()
    host.event(T0, {"event": "host_fail", "check": "ptr.192.0.2.25", "detail": "no PTR record"})
    host.event(T0, {"event": "connect"})  # not a host event: not in the timeline
    assert host.as_json()["host_events"] == [
        {
            "time": T0.isoformat(),
            "event": "host_fail",
            "check": "ptr.192.0.2.25",
            "detail": "no PTR record",
        }
    ]
    assert host.exit_code() == 2


def inbound(dkim: str, spf: str, dmarc: str, arc: str) -> dict[str, str]:
    return {
        "action": "accept",
        "source": "external",
        "dkim": "none",
        "reason": "not_outbound",
        "dkim_in": dkim,
        "spf_in": spf,
        "dmarc_in": dmarc,
        "arc_in": arc,
    }


NOT_VERIFIED = {"action": "accept", "source": "external", "dkim": "none", "reason": "not_outbound"}


def test_inbound_results_are_counted_per_method_and_shown_in_their_own_block() -> None:
    summary = Summary()
    summary.add(message("D1", 0, inbound("pass", "pass", "pass", "none")))
    summary.add(message("D2", 1, inbound("pass", "softfail", "pass", "none")))
    summary.add(message("D3", 2, inbound("fail", "fail", "fail", "pass")))
    summary.add(message("D4", 3, NOT_VERIFIED))  # an older version's line: no results
    summary.add(message("D5", 4, {**SIGNED, "source": "internal"}))
    data = summary.as_json()
    assert data["inbound"] == {
        "messages": 3,
        "dkim": {"pass": 2, "fail": 1},
        "spf": {"pass": 1, "softfail": 1, "fail": 1},
        "dmarc": {"pass": 2, "fail": 1},
        "arc": {"none": 2, "pass": 1},
    }
    assert data["messages"] == {  # counted as before
        "total": 5,
        "signed": 1,
        "unsigned": {"not_outbound": 4},
        "actions": {"accept": 5},
    }
    text = render(summary)
    block = text.split("\n\n")[1]
    assert block == (
        "Inbound verification: 3 messages\n"
        "  dkim: pass 2, fail 1\n"
        "  spf: pass 1, softfail 1, fail 1\n"
        "  dmarc: pass 2, fail 1\n"
        "  arc: none 2, pass 1"
    )
    assert summary.exit_code() == 0  # what others' mail fails is no problem of this host


def test_no_inbound_block_without_inbound_results() -> None:
    summary = Summary()
    summary.add(message("E1", 0, NOT_VERIFIED))
    summary.add(message("E2", 1, {**SIGNED, "source": "authenticated"}))
    # An outbound line is no inbound message, whatever it carries.
    summary.add(message("E3", 2, {**inbound("pass", "pass", "pass", "none"), "source": "local"}))
    assert summary.as_json()["inbound"] == {
        "messages": 0,
        "dkim": {},
        "spf": {},
        "dmarc": {},
        "arc": {},
    }
    assert "Inbound" not in render(summary)
