"""The root test and what a resolver failing it does to the rows that rest on it."""

from __future__ import annotations

import io
import json

import pytest

from reputable.checklist import EXIT, overall, render_json, render_text
from reputable.checks.dnsroot import (
    DNS_ROW,
    DNSBL_ROW,
    DnsTrust,
    RootAnswer,
    interpret_root,
    mark_untrusted,
    trust_of,
)
from reputable.checks.findings import Finding, Outcome, Status
from reputable.snapshot import state_changes

SERVERS = "127.0.0.1:53 ([dns] nameservers)"
ANSWERS = RootAnswer(SERVERS)
DENIED = RootAnswer(
    SERVERS, "resolver denies the root: NXDOMAIN for the DNS root", root_denied=True
)
SILENT = RootAnswer(SERVERS, "timeout: no answer within 2 s", timed_out=True)
REFUSED = RootAnswer("127.0.0.1:5353 ([dns] dnsbl_nameservers)", "REFUSED")

ROWS = [
    Finding("host", Status.OK, "sending IPs 192.0.2.2"),
    Finding("ptr.192.0.2.2", Status.FAIL, "192.0.2.2 has no PTR record", "ask", Outcome.PTR),
    Finding("helo.192.0.2.2", Status.WARN, "no PTR to compare with", "ask"),
    Finding("dnsbl.zen.spamhaus.org.192.0.2.2", Status.OK, "not listed"),
    Finding("static_ip.192.0.2.2", Status.OK, "not in the PBL"),
    Finding("dkim.s1.example.com", Status.FAIL, "missing", "publish", Outcome.DKIM_RECORD),
    Finding("spf.example.com.192.0.2.2", Status.WARN, "no SPF record"),
    Finding("dmarc.example.com", Status.WARN, "no DMARC record"),
    Finding("mx.example.com", Status.FAIL, "no MX"),
    Finding("port25", Status.OK, "outbound connection works"),
    Finding("postfix.smtpd_milters", Status.FAIL, "no milter", "postconf"),
]
RECORD_ROWS = {"ptr", "helo", "dkim", "spf", "dmarc", "mx"}
DNSBL_ROWS = {"dnsbl", "static_ip"}


def statuses(findings: list[Finding]) -> dict[str, Status]:
    return {f.id.split(".", 1)[0]: f.status for f in findings}


def test_a_resolver_that_sees_the_root_is_ok_and_trusted() -> None:
    assert interpret_root(ANSWERS).status is Status.OK
    assert trust_of(ANSWERS, None).trusted
    assert mark_untrusted(ROWS, trust_of(ANSWERS, None)) == ROWS


def test_a_root_without_ns_is_a_warning_but_the_answers_stand() -> None:
    odd = RootAnswer(SERVERS, has_ns=False)
    row = interpret_root(odd)
    assert (row.status, row.outcome) == (Status.WARN, None)
    assert trust_of(odd, None).trusted


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (DENIED, "says the DNS root does not exist (NXDOMAIN)"),
        (SILENT, "DNS does not answer"),
        (REFUSED, "does not answer for the DNS root (REFUSED)"),
    ],
)
def test_a_failed_root_test_fails_the_dns_row_and_gates_as_dns_error(
    answer: RootAnswer, words: str
) -> None:
    row = interpret_root(answer)
    assert (row.id, row.status, row.outcome) == (DNS_ROW, Status.FAIL, Outcome.DNS_ERROR)
    assert words in row.summary and answer.servers in row.summary
    assert "every row that needs it is unknown" in row.summary
    assert row.fix


def test_every_row_resting_on_the_untrusted_resolver_is_unknown() -> None:
    marked = mark_untrusted(ROWS, trust_of(DENIED, None))
    found = statuses(marked)
    assert {family for family, status in found.items() if status is Status.UNKNOWN} == (
        RECORD_ROWS | DNSBL_ROWS
    )
    for finding in marked:
        family = finding.id.split(".", 1)[0]
        if family in RECORD_ROWS | DNSBL_ROWS:
            assert finding.summary == (
                "could not check: DNS cannot be trusted (resolver denies the root: NXDOMAIN for "
                "the DNS root); see the dns row"
            )
            assert finding.fix == "" and finding.ttl_s == 0  # asked again at the next refresh
    # The rows that need no resolver keep their verdicts.
    assert (found["host"], found["port25"], found["postfix"]) == (
        Status.OK,
        Status.OK,
        Status.FAIL,
    )


def test_rows_that_gate_mail_take_dns_error_while_unknown() -> None:
    marked = {f.id.split(".", 1)[0]: f for f in mark_untrusted(ROWS, trust_of(SILENT, None))}
    for family in ("ptr", "dnsbl", "dkim", "spf", "dmarc"):
        assert marked[family].outcome is Outcome.DNS_ERROR, family
    for family in ("helo", "static_ip", "mx"):
        assert marked[family].outcome is None, family


def test_a_separate_dnsbl_resolver_only_makes_the_blocklist_rows_unknown() -> None:
    trust = trust_of(ANSWERS, REFUSED)
    assert trust == DnsTrust("", "REFUSED", DNSBL_ROW)
    marked = mark_untrusted(ROWS, trust)
    unknown = {f.id.split(".", 1)[0] for f in marked if f.status is Status.UNKNOWN}
    assert unknown == DNSBL_ROWS
    assert all(
        f"see the {DNSBL_ROW} row" in f.summary for f in marked if f.status is Status.UNKNOWN
    )
    # ...and a failing record resolver leaves the blocklist rows of a working one standing.
    marked = mark_untrusted(ROWS, trust_of(DENIED, ANSWERS))
    assert {f.id.split(".", 1)[0] for f in marked if f.status is Status.UNKNOWN} == RECORD_ROWS


def test_key_records_asked_of_verify_nameservers_do_not_rest_on_the_resolver() -> None:
    marked = mark_untrusted(ROWS, trust_of(DENIED, None, dkim_by_resolver=False))
    assert statuses(marked)["dkim"] is Status.FAIL


def test_check_exits_3_could_not_check_when_the_dns_row_fails() -> None:
    findings = [interpret_root(DENIED), *mark_untrusted(ROWS, trust_of(DENIED, None))]
    assert overall(findings) is Status.UNKNOWN
    assert EXIT[overall(findings)] == 3
    out = io.StringIO()
    render_json(findings, out)
    assert json.loads(out.getvalue())["status"] == "unknown"
    text = io.StringIO()
    render_text(findings, text)
    lines = text.getvalue().splitlines()
    assert any(line.split()[:2] == ["unknown", "ptr.192.0.2.2"] for line in lines if line)
    assert "8 unknown" in text.getvalue()
    assert "could not check: DNS cannot be trusted" in text.getvalue()


def test_unknown_for_lack_of_anything_to_tell_by_does_not_raise_the_exit_code() -> None:
    findings = [
        interpret_root(ANSWERS),
        Finding("ptr.192.0.2.2", Status.OK, "forward-confirmed"),
        Finding("static_ip.192.0.2.2", Status.UNKNOWN, "cannot tell: no Spamhaus zone asked"),
    ]
    assert overall(findings) is Status.OK
    assert EXIT[overall(findings)] == 0
    assert EXIT[overall([*findings, Finding("mx.example.com", Status.WARN, "one MX")])] == 1


def test_only_the_dns_row_is_logged_when_the_resolver_fails_and_when_it_recovers() -> None:
    before = [interpret_root(ANSWERS), *ROWS[:5]]
    during = [interpret_root(DENIED), *mark_untrusted(ROWS[:5], trust_of(DENIED, None))]
    assert [f.id for f in state_changes(before, during)] == [DNS_ROW]
    assert state_changes(during, during) == []
    after = [interpret_root(ANSWERS), *ROWS[:5]]
    changed = state_changes(during, after)
    # dns recovers (host_ok); the PTR failure known before the outage is news again.
    assert [(f.id, f.status) for f in changed] == [
        (DNS_ROW, Status.OK),
        ("ptr.192.0.2.2", Status.FAIL),
        ("helo.192.0.2.2", Status.WARN),
    ]
