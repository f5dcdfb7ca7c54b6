"""The gate: findings to one action, in enforce and monitor mode, and the words it says."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from reputable.checks.dmarc import DkimSignature, KeyRecord
from reputable.checks.findings import Finding, Outcome, Status, worst
from reputable.config import SEVERITY, Action, ActionsConfig, Mode
from reputable.gate import (
    MAX_HEADER_LINE,
    WARNING_HEADER,
    decide_gate,
    fold_list,
    summary_fields,
)
from reputable.host import SendingIdentity
from reputable.reputation import TtlCache
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey
from reputable.snapshot import HostSnapshot, next_interval, state_changes

LISTED = Finding(
    "dnsbl.zen.spamhaus.org.203.0.113.5",
    Status.FAIL,
    "sending IP 203.0.113.5 is listed on zen.spamhaus.org (127.0.0.2)",
    "request removal at https://check.spamhaus.org/",
    Outcome.DNSBL,
)
SOFTFAIL = Finding(
    "spf.example.com.203.0.113.5",
    Status.FAIL,
    "SPF ~all for 203.0.113.5",
    "add ip4:203.0.113.5",
    Outcome.SPF_SOFTFAIL,
)
TIMEOUT = Finding("ptr.203.0.113.5", Status.WARN, "PTR lookup timed out", "", Outcome.DNS_ERROR)
CLEAN = Finding(
    "ptr.203.0.113.6", Status.OK, "PTR mail.example.com, forward-confirmed", "", Outcome.PTR
)
ADVISORY = Finding("mx.example.com", Status.WARN, "no MX maps to a sending IP")


def test_most_severe_action_wins_and_names_the_check_and_fix() -> None:
    actions = ActionsConfig(dnsbl=Action.REJECT, spf_softfail=Action.FLAG)
    decision = decide_gate([SOFTFAIL, CLEAN, ADVISORY, LISTED], actions, Mode.ENFORCE)
    assert decision.action is Action.REJECT
    assert decision.would_be is None
    assert decision.findings[0] is LISTED
    reply = decision.reply("mail refused")
    assert reply.startswith(
        "sending IP 203.0.113.5 is listed on zen.spamhaus.org (127.0.0.2); mail refused"
    )
    assert "fix: request removal at https://check.spamhaus.org/" in reply
    assert "(and 1 more failed check(s))" in reply
    assert (
        decision.failed_checks == "dnsbl.zen.spamhaus.org.203.0.113.5,spf.example.com.203.0.113.5"
    )


def test_defaults_hold_a_listing_and_flag_a_softfail() -> None:
    assert decide_gate([LISTED], ActionsConfig(), Mode.ENFORCE).action is Action.HOLD
    assert decide_gate([SOFTFAIL], ActionsConfig(), Mode.ENFORCE).action is Action.FLAG
    assert decide_gate([CLEAN, ADVISORY], ActionsConfig(), Mode.ENFORCE).action is Action.ACCEPT


def test_dns_errors_follow_their_own_action() -> None:
    decision = decide_gate([TIMEOUT], ActionsConfig(), Mode.ENFORCE)
    assert decision.action is Action.ACCEPT
    assert decision.findings == (TIMEOUT,)  # still named in the log
    assert (
        decide_gate([TIMEOUT], ActionsConfig(dns_error=Action.TEMPFAIL), Mode.ENFORCE).action
        is Action.TEMPFAIL
    )


def test_monitor_mode_only_logs() -> None:
    decision = decide_gate([LISTED], ActionsConfig(dnsbl=Action.REJECT), Mode.MONITOR)
    assert decision.action is Action.ACCEPT
    assert decision.would_be is Action.REJECT
    assert decide_gate([CLEAN], ActionsConfig(), Mode.MONITOR).would_be is None


def test_reply_is_one_safe_line() -> None:
    odd = Finding("spf.x", Status.FAIL, "100% wrong\nsecond line \x00", "fix it", Outcome.SPF_FAIL)
    reply = decide_gate([odd], ActionsConfig(), Mode.ENFORCE).reply("held")
    assert "\n" not in reply and "\x00" not in reply
    assert "100%% wrong" in reply  # libmilter reads '%' as a format character


def test_summary_fields() -> None:
    dmarc_bad = Finding("dmarc.example.com", Status.FAIL, "unaligned", "", Outcome.DMARC_UNALIGNED)
    words = summary_fields([CLEAN, LISTED, dmarc_bad])
    assert words == {"ptr": "ok", "dnsbl": "listed", "dmarc": "unaligned"}
    assert summary_fields([TIMEOUT])["ptr"] == "error"


finding_strategy = st.builds(
    Finding,
    id=st.sampled_from(["ptr.a", "dnsbl.z.a", "spf.d.a", "dmarc.d", "dkim.s.d", "mx.d"]),
    status=st.sampled_from(list(Status)),
    summary=st.text(max_size=50),
    fix=st.text(max_size=20),
    outcome=st.one_of(st.none(), st.sampled_from(list(Outcome))),
)
action_strategy = st.sampled_from(list(Action))


@given(st.lists(finding_strategy, max_size=8), st.lists(action_strategy, min_size=7, max_size=7))
def test_gate_properties(findings: list[Finding], chosen: list[Action]) -> None:
    actions = ActionsConfig(*chosen)
    enforce = decide_gate(findings, actions, Mode.ENFORCE)
    monitor = decide_gate(findings, actions, Mode.MONITOR)
    assert monitor.action is Action.ACCEPT
    assert (monitor.would_be or Action.ACCEPT) is enforce.action
    judged = [
        getattr(actions, f.outcome.value)
        for f in findings
        if f.outcome is not None and f.status is not Status.OK
    ]
    assert SEVERITY[enforce.action] == max((SEVERITY[a] for a in judged), default=0)
    assert all(f.status is not Status.OK for f in enforce.findings)
    assert len(enforce.reply("x")) <= 400


def test_worst_status() -> None:
    assert worst([CLEAN, ADVISORY]) is Status.WARN
    assert worst([CLEAN, LISTED]) is Status.FAIL
    assert worst([]) is Status.OK


def test_ttl_cache_keeps_entries_for_their_ttl() -> None:
    now = [1000.0]
    cache: TtlCache[str, int] = TtlCache(clock=lambda: now[0])
    loads: list[str] = []

    def load() -> tuple[int, int]:
        loads.append("x")
        return len(loads), 120

    assert cache.get_or_load("k", load) == 1
    now[0] += 119
    assert cache.get_or_load("k", load) == 1
    now[0] += 2
    assert cache.get_or_load("k", load) == 2
    assert len(loads) == 2


def test_refresh_interval_honours_ttl_within_bounds() -> None:
    short = Finding("ptr.a", Status.OK, "", ttl_s=60)
    long = Finding("ptr.b", Status.OK, "", ttl_s=1800)
    huge = Finding("ptr.c", Status.OK, "", ttl_s=86400)
    assert next_interval([short, long], 300) == 300  # at most every refresh
    assert next_interval([long], 300) == 1800  # no sooner than the answers go stale
    assert next_interval([huge], 300) == 3600  # but at least hourly
    assert next_interval([], 300) == 300


def test_state_changes_are_logged_once() -> None:
    assert state_changes([], [CLEAN]) == []
    assert state_changes([], [LISTED]) == [LISTED]
    assert state_changes([LISTED], [LISTED]) == []
    relisted_ok = Finding(LISTED.id, Status.OK, "not listed")
    assert state_changes([LISTED], [relisted_ok]) == [relisted_ok]


def test_the_snapshot_says_which_signatures_verify_and_knows_nothing_before_a_refresh() -> None:
    private = Ed25519PrivateKey.generate()
    keys = [
        SigningKey("example.com", "e1", Algorithm.ED25519_SHA256, private),
        SigningKey("example.com", "e2", Algorithm.ED25519_SHA256, private),
    ]
    identity = SendingIdentity((), "mail.example.com", "config")
    assert HostSnapshot(identity).signatures(keys) == [
        DkimSignature("example.com", "e1", KeyRecord.UNKNOWN),
        DkimSignature("example.com", "e2", KeyRecord.UNKNOWN),
    ]
    records = {("e1", "example.com"): KeyRecord.WRONG, ("e2", "example.com"): KeyRecord.MATCHING}
    taken = HostSnapshot(identity, (), 1.0, records)
    assert [s.record for s in taken.signatures(keys)] == [KeyRecord.WRONG, KeyRecord.MATCHING]


def test_the_warning_header_names_only_the_kinds_of_the_failed_checks() -> None:
    ptr_fail = Finding(
        "ptr.203.0.113.5", Status.FAIL, "203.0.113.5 has no PTR record", "ask", Outcome.PTR
    )
    dns_error = Finding(
        "dnsbl.bl.example.test.203.0.113.5",
        Status.WARN,
        "There is no SOA RR at the DNS root name. This should never happen!",
        "",
        Outcome.DNS_ERROR,
    )
    actions = ActionsConfig(
        ptr=Action.FLAG, dnsbl=Action.FLAG, spf_softfail=Action.FLAG, dns_error=Action.FLAG
    )
    decision = decide_gate([ptr_fail, LISTED, SOFTFAIL, dns_error], actions, Mode.ENFORCE)
    assert decision.action is Action.FLAG
    assert decision.warning() == "ptr, dnsbl, spf"
    assert "203.0.113.5" in decision.detail() and "SOA" in decision.detail()  # for the log only


def test_a_check_that_only_logs_is_not_in_the_warning_header() -> None:
    decision = decide_gate([SOFTFAIL, TIMEOUT], ActionsConfig(), Mode.ENFORCE)
    assert (decision.action, decision.warning()) == (Action.FLAG, "spf")
    assert [f.id for f in decision.findings] == [SOFTFAIL.id, TIMEOUT.id]  # both logged


@given(st.lists(st.from_regex(r"[a-z_]{1,90}", fullmatch=True), min_size=1, max_size=40))
def test_the_warning_header_folds_within_rfc_5322_line_lengths(kinds: list[str]) -> None:
    value = fold_list(WARNING_HEADER, kinds)
    lines = f"{WARNING_HEADER}: {value}".split("\n")
    for number, text in enumerate(lines):
        assert len(text) <= 998
        # Only an item that is itself too long may pass 78, alone on its line.
        assert len(text) <= MAX_HEADER_LINE or text.strip(" ,") in kinds or number == 0
        assert number == 0 or text.startswith(" ")
    assert [k.strip(",") for k in " ".join(lines).split()[1:]] == kinds


def test_a_long_warning_is_folded_at_78() -> None:
    kinds = ["dnsbl", "ptr", "spf", "dmarc", "dkim_record", "static_ip", "helo", "dns", "x" * 20]
    header = f"{WARNING_HEADER}: {fold_list(WARNING_HEADER, kinds)}"
    assert header.split("\n") == [
        "X-Reputable-Warning: dnsbl, ptr, spf, dmarc, dkim_record, static_ip, helo,",
        " dns, xxxxxxxxxxxxxxxxxxxx",
    ]
