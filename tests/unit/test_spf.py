"""SPF: every branch of interpret_spf and lint_spf_record, and pyspf routed through our resolver.

`FakeResolver` (a dnspython Resolver answering from a dict, no sockets) is
shared with test_dmarc and test_mx.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.resolver
import pytest
import spf
from hypothesis import given
from hypothesis import strategies as st

from reputable.checks.findings import Finding, Outcome, Status
from reputable.checks.spf import (
    DEFAULT_TTL_S,
    RETRY_TTL_S,
    SpfEvaluation,
    SpfRecordTree,
    SpfResult,
    interpret_spf,
    lint_spf_record,
    query_spf,
    query_spf_tree,
)

IP = "203.0.113.5"
IP6 = "2001:db8::25"
DOMAIN = "example.com"


class FakeResolver(dns.resolver.Resolver):
    """Answers from `zone` ((name, type) → values; TXT values as plain text), logging each question.

    A name with no records of any type, and no name below it, is NXDOMAIN;
    a name in `fail` raises that exception class instead.
    """

    def __init__(
        self,
        zone: Mapping[tuple[str, str], Sequence[str]] | None = None,
        ttl: int = 3600,
        fail: Mapping[str, type[Exception]] | None = None,
        ttls: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        super().__init__(configure=False)
        self.zone = {(n.lower(), t.upper()): list(v) for (n, t), v in (zone or {}).items()}
        self.ttl = ttl
        self.ttls = dict(ttls or {})
        self.fail = dict(fail or {})
        self.asked: list[tuple[str, str]] = []

    def resolve(
        self,
        qname: dns.name.Name | str,
        rdtype: dns.rdatatype.RdataType | str = dns.rdatatype.A,
        *args: Any,
        **kwargs: Any,
    ) -> dns.resolver.Answer:
        name = str(qname).rstrip(".").lower()
        rtype = rdtype.upper() if isinstance(rdtype, str) else dns.rdatatype.to_text(rdtype)
        self.asked.append((name, rtype))
        if name in self.fail:
            raise self.fail[name]
        if not any(n == name or n.endswith("." + name) for n, _ in self.zone):
            raise dns.resolver.NXDOMAIN
        owner = dns.name.from_text(name)
        code = dns.rdatatype.from_text(rtype)
        response = dns.message.make_response(dns.message.make_query(owner, code))
        values = self.zone.get((name, rtype), [])
        if values:
            rrset = response.find_rrset(
                response.answer, owner, dns.rdataclass.IN, code, create=True
            )
            for value in values:
                rrset.add(self._rdata(code, value), self.ttls.get((name, rtype), self.ttl))
        assert isinstance(response, dns.message.QueryMessage)
        return dns.resolver.Answer(owner, code, dns.rdataclass.IN, response)

    @staticmethod
    def _rdata(code: dns.rdatatype.RdataType, value: str) -> dns.rdata.Rdata:
        if code == dns.rdatatype.TXT:
            data = value.encode()
            chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
            return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, code, chunks)
        return dns.rdata.from_text(
            dns.rdataclass.IN, code, value, origin=dns.name.root, relativize=False
        )


def txt(zone: dict[tuple[str, str], list[str]], name: str, *records: str) -> None:
    zone[(name, "TXT")] = list(records)


@pytest.fixture(autouse=True)
def no_global_pyspf_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspf's own lookup (dnspython's default resolver) must never run."""

    def refuse(*args: Any, **kwargs: Any) -> list[Any]:
        raise AssertionError(f"spf.DNSLookup called with {args}: pyspf bypassed our resolver")

    monkeypatch.setattr(spf, "DNSLookup", refuse)


# --- interpret_spf: every result ---


def evaluation(result: SpfResult, explanation: str = "", mechanism: str = "") -> SpfEvaluation:
    return SpfEvaluation(IP, DOMAIN, result, explanation, 600, mechanism)


def test_pass_is_ok_and_names_the_mechanism() -> None:
    found = interpret_spf(evaluation(SpfResult.PASS, mechanism=f"ip4:{IP}"))
    assert (found.id, found.status, found.outcome) == (f"spf.{DOMAIN}.{IP}", Status.OK, None)
    assert found.summary == f"SPF for {DOMAIN} allows {IP} (ip4:{IP})"
    assert found.ttl_s == 600


def test_fail_gates_as_spf_fail_with_the_fix() -> None:
    found = interpret_spf(evaluation(SpfResult.FAIL, "SPF fail - not authorized", "-all"))
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.SPF_FAIL)
    assert found.summary.startswith(f"SPF for {DOMAIN} does not allow {IP} (-all)")
    assert f"add ip4:{IP}" in found.fix and "a/mx" in found.fix


def test_fail_for_ipv6_suggests_ip6() -> None:
    found = interpret_spf(SpfEvaluation(IP6, DOMAIN, SpfResult.FAIL))
    assert found.id == f"spf.{DOMAIN}.{IP6}"
    assert f"add ip6:{IP6}" in found.fix


def test_softfail_is_a_failure_judged_as_spf_softfail() -> None:
    found = interpret_spf(evaluation(SpfResult.SOFTFAIL, mechanism="~all"))
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.SPF_SOFTFAIL)
    assert "(~all, softfail)" in found.summary


def test_neutral_is_an_advisory_warning() -> None:
    found = interpret_spf(evaluation(SpfResult.NEUTRAL, mechanism="?all"))
    assert (found.status, found.outcome) == (Status.WARN, None)
    assert "says nothing about" in found.summary


def test_none_asks_for_a_record_with_our_address() -> None:
    found = interpret_spf(evaluation(SpfResult.NONE))
    assert (found.status, found.outcome) == (Status.WARN, None)
    assert found.summary.startswith(f"no SPF record at {DOMAIN}")
    assert f'"v=spf1 ip4:{IP} -all"' in found.fix


@pytest.mark.parametrize(
    ("explanation", "fix_words"),
    [
        ("SPF Permanent Error: Too many DNS lookups", "at most 10 DNS-querying terms"),
        ("SPF Permanent Error: Void lookup limit of 2 exceeded", "more than 2 empty lookups"),
        ("SPF Permanent Error: Two or more type TXT spf records found.", "merge the v=spf1"),
        ("SPF Permanent Error: Unknown mechanism found: moo", "fix the syntax"),
    ],
)
def test_permerror_fails_as_spf_fail_and_says_why(explanation: str, fix_words: str) -> None:
    found = interpret_spf(evaluation(SpfResult.PERMERROR, explanation))
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.SPF_FAIL)
    assert explanation.removeprefix("SPF Permanent Error: ") in found.summary
    assert "SPF Permanent Error" not in found.summary
    assert fix_words in found.fix


def test_temperror_is_a_dns_error_warning() -> None:
    found = interpret_spf(evaluation(SpfResult.TEMPERROR, "SPF Temporary Error: DNS: timeout"))
    assert (found.status, found.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert found.summary.endswith("DNS: timeout")


def test_helo_identity_is_named() -> None:
    found = interpret_spf(
        SpfEvaluation(IP, "mail.example.com", SpfResult.FAIL, mechanism="-all"), "helo"
    )
    assert found.summary.startswith("SPF for HELO name mail.example.com does not allow")


@given(
    ip=st.one_of(st.ip_addresses().map(str), st.text(max_size=20)),
    domain=st.text(max_size=40),
    result=st.sampled_from(SpfResult),
    explanation=st.text(max_size=80),
    ttl=st.integers(min_value=0, max_value=2**31),
    mechanism=st.text(max_size=20),
    identity=st.sampled_from(["mailfrom", "helo", ""]),
)
def test_interpret_spf_never_raises_and_every_failure_gates(
    ip: str,
    domain: str,
    result: SpfResult,
    explanation: str,
    ttl: int,
    mechanism: str,
    identity: str,
) -> None:
    found = interpret_spf(SpfEvaluation(ip, domain, result, explanation, ttl, mechanism), identity)
    assert found.id == f"spf.{domain}.{ip}"
    assert found.ttl_s == ttl
    if found.status is Status.FAIL:
        assert found.outcome in (Outcome.SPF_FAIL, Outcome.SPF_SOFTFAIL)
    assert (found.status is Status.OK) == (result is SpfResult.PASS)


# --- lint_spf_record over trees built as data ---


def tree(
    domain: str,
    *records: str,
    children: Sequence[SpfRecordTree] = (),
    voids: Sequence[str] = (),
) -> SpfRecordTree:
    return SpfRecordTree(domain, records, "", tuple(children), tuple(voids))


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def include_chain(length: int) -> SpfRecordTree:
    """example.com → include:i1.example.net → … → include:i<length>.example.net (length includes)."""
    node = tree(f"i{length}.example.net", "v=spf1 ip4:192.0.2.0/24 -all")
    for i in range(length - 1, 0, -1):
        node = tree(
            f"i{i}.example.net", f"v=spf1 include:i{i + 1}.example.net -all", children=[node]
        )
    return tree(DOMAIN, "v=spf1 include:i1.example.net -all", children=[node])


def test_sound_record_is_ok_with_its_lookup_count() -> None:
    found = only(lint_spf_record(tree(DOMAIN, f"v=spf1 ip4:{IP} mx a:mail.example.com -all")))
    assert (found.id, found.status, found.outcome) == (f"spf.record.{DOMAIN}", Status.OK, None)
    assert "2 of 10 DNS lookups" in found.summary


def test_ten_lookups_through_includes_are_still_ok() -> None:
    found = only(lint_spf_record(include_chain(10)))
    assert found.status is Status.OK
    assert "10 of 10" in found.summary


def test_include_chain_with_eleven_lookups_is_a_permerror() -> None:
    found = only(lint_spf_record(include_chain(11)))
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.SPF_FAIL)
    assert "needs 11 DNS lookups" in found.summary and "RFC 7208 §4.6.4" in found.summary


def test_lookups_count_every_querying_term_through_includes_and_redirect() -> None:
    # Root: include, a, mx, exists, redirect = 5; include target: ptr? no: a, mx, mx = 3;
    # redirect target: include = 1 and its target 2 more = 3. Total 11.
    leaf = tree("leaf.example.net", "v=spf1 a mx -all")
    redirected = tree("r.example.net", "v=spf1 include:leaf.example.net -all", children=[leaf])
    included = tree("inc.example.net", "v=spf1 a mx mx:mx2.example.net -all")
    root = tree(
        DOMAIN,
        "v=spf1 include:inc.example.net a mx exists:x.example.org ip4:192.0.2.1 "
        "redirect=r.example.net",
        children=[included, redirected],
    )
    found = lint_spf_record(root)
    assert found[0].status is Status.FAIL
    assert "needs 11 DNS lookups" in found[0].summary


def test_redirect_is_ignored_when_there_is_an_all() -> None:
    # RFC 7208 §6.1: redirect has no effect with "all"; pyspf still counts the term.
    root = tree(DOMAIN, "v=spf1 ip4:192.0.2.1 -all redirect=nowhere.example.net")
    found = only(lint_spf_record(root))
    assert found.status is Status.OK
    assert "1 of 10" in found.summary


def test_two_spf_records_are_a_permerror() -> None:
    found = only(lint_spf_record(tree(DOMAIN, "v=spf1 -all", "v=spf1 ip4:192.0.2.1 -all")))
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.SPF_FAIL)
    assert "2 v=spf1 TXT records" in found.summary and "§4.5" in found.summary


@pytest.mark.parametrize("records", [(), ("google-site-verification=abc", "v=spf10 -all")])
def test_no_spf_record_is_a_warning(records: tuple[str, ...]) -> None:
    found = only(lint_spf_record(tree(DOMAIN, *records)))
    assert (found.status, found.outcome) == (Status.WARN, None)
    assert found.summary.startswith(f"no SPF record at {DOMAIN}")


def test_unreadable_record_is_a_dns_error() -> None:
    found = only(lint_spf_record(SpfRecordTree(DOMAIN, None, "no answer within 2 s", ttl_s=60)))
    assert (found.status, found.outcome, found.ttl_s) == (Status.WARN, Outcome.DNS_ERROR, 60)
    assert "no answer within 2 s" in found.summary


@pytest.mark.parametrize("ending", ["+all", "all"])
def test_plus_all_warns_that_anyone_may_send(ending: str) -> None:
    found = only(lint_spf_record(tree(DOMAIN, f"v=spf1 ip4:{IP} {ending}")))
    assert (found.status, found.outcome) == (Status.WARN, None)
    assert "+all" in found.summary and "any host" in found.summary


def test_question_all_warns_that_it_says_nothing() -> None:
    found = only(lint_spf_record(tree(DOMAIN, f"v=spf1 ip4:{IP} ?all")))
    assert found.status is Status.WARN
    assert "?all" in found.summary


def test_no_all_at_all_warns() -> None:
    found = only(lint_spf_record(tree(DOMAIN, f"v=spf1 ip4:{IP}")))
    assert found.status is Status.WARN
    assert "without an all mechanism" in found.summary


def test_question_all_inside_an_include_is_harmless_but_plus_all_is_not() -> None:
    neutral = tree("n.example.net", "v=spf1 ip4:192.0.2.1 ?all")
    assert (
        only(
            lint_spf_record(tree(DOMAIN, "v=spf1 include:n.example.net -all", children=[neutral]))
        ).status
        is Status.OK
    )
    anyone = tree("p.example.net", "v=spf1 +all")
    found = only(
        lint_spf_record(tree(DOMAIN, "v=spf1 include:p.example.net -all", children=[anyone]))
    )
    assert found.status is Status.WARN
    assert "p.example.net ends in +all" in found.summary and f"send as {DOMAIN}" in found.summary


def test_ptr_is_deprecated() -> None:
    found = only(lint_spf_record(tree(DOMAIN, "v=spf1 ptr:example.com -all")))
    assert found.status is Status.WARN
    assert "ptr" in found.summary and "RFC 7208 §5.5" in found.summary


def test_more_than_two_void_lookups_warn() -> None:
    gone = tree("gone.example.net")  # NXDOMAIN: no TXT at all, itself a void lookup
    root = tree(
        DOMAIN,
        "v=spf1 a:a.example.org mx:b.example.org include:gone.example.net -all",
        children=[gone],
        voids=["a:a.example.org", "mx:b.example.org"],
    )
    findings = lint_spf_record(root)
    assert [f.status for f in findings] == [Status.FAIL, Status.WARN]
    assert "include:gone.example.net" in findings[0].summary and "§5.2" in findings[0].summary
    assert findings[1].summary.startswith("3 lookups") and findings[1].outcome is None


def test_two_void_lookups_are_fine() -> None:
    root = tree(DOMAIN, "v=spf1 a:a.example.org a:b.example.org -all", voids=["a", "b"])
    assert only(lint_spf_record(root)).status is Status.OK


def test_redirect_to_a_domain_without_spf_is_a_permerror() -> None:
    target = tree("r.example.net", "some other text")
    found = only(lint_spf_record(tree(DOMAIN, "v=spf1 redirect=r.example.net", children=[target])))
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.SPF_FAIL)
    assert "redirect=r.example.net" in found.summary and "§6.1" in found.summary


def test_include_with_two_records_is_a_permerror() -> None:
    target = tree("two.example.net", "v=spf1 -all", "v=spf1 a -all")
    found = only(
        lint_spf_record(tree(DOMAIN, "v=spf1 include:two.example.net -all", children=[target]))
    )
    assert found.status is Status.FAIL and "2 v=spf1 records" in found.summary


def test_unreadable_include_is_a_dns_error() -> None:
    target = SpfRecordTree("slow.example.net", None, "no answer within 2 s")
    found = only(
        lint_spf_record(tree(DOMAIN, "v=spf1 include:slow.example.net -all", children=[target]))
    )
    assert (found.status, found.outcome) == (Status.WARN, Outcome.DNS_ERROR)


def test_include_loop_is_a_permerror() -> None:
    # The walker stops at a loop: loop.example.net's tree has no child for example.com.
    back = tree("loop.example.net", f"v=spf1 include:{DOMAIN} -all")
    found = only(
        lint_spf_record(tree(DOMAIN, "v=spf1 include:loop.example.net -all", children=[back]))
    )
    assert found.status is Status.FAIL
    assert f"{DOMAIN} → loop.example.net → {DOMAIN}" in found.summary


@pytest.mark.parametrize(
    "term",
    [
        "moo",
        "ip4:192.0.2.300",
        "ip4:192.0.2.0/33",
        "ip6:2001:db8::zz",
        "-all:now",
        "include",
        "include:localhost",
        "a:example.123",
        "a/99x",
    ],
)
def test_syntax_errors_are_permerrors(term: str) -> None:
    found = lint_spf_record(tree(DOMAIN, f"v=spf1 {term} -all"))[0]
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.SPF_FAIL)
    assert "syntax error" in found.summary


def test_duplicate_redirect_is_a_permerror() -> None:
    found = lint_spf_record(tree(DOMAIN, "v=spf1 redirect=a.example.net redirect=b.example.net"))
    assert found[0].status is Status.FAIL and "redirect= twice" in found[0].summary


def test_valid_terms_and_unknown_modifiers_pass() -> None:
    record = (
        "v=spf1 +ip4:192.0.2.0/24 ~ip6:2001:db8::/32 a//64 a/24//48 mx:mail.example.com/26 "
        "exp=explain.example.com moo=cow -all"
    )
    found = only(lint_spf_record(tree(DOMAIN, record)))
    assert found.status is Status.OK and "3 of 10" in found.summary


def test_macro_targets_are_counted_not_followed() -> None:
    found = only(
        lint_spf_record(
            tree(DOMAIN, "v=spf1 exists:%{i}.spf.example.net include:%{d}.example.org -all")
        )
    )
    assert found.status is Status.OK and "2 of 10" in found.summary


def test_findings_take_the_smallest_ttl_of_the_tree() -> None:
    child = SpfRecordTree("c.example.net", ("v=spf1 -all",), ttl_s=30)
    root = SpfRecordTree(DOMAIN, ("v=spf1 include:c.example.net -all",), children=(child,))
    assert only(lint_spf_record(root)).ttl_s == 30


domains = st.sampled_from([DOMAIN, "a.example.net", "b.example.net", "c.example.org"])
terms = st.one_of(
    st.sampled_from(["-all", "~all", "?all", "+all", "ptr", "a", "mx", "ip4:192.0.2.1", "moo"]),
    domains.map(lambda d: f"include:{d}"),
    domains.map(lambda d: f"redirect={d}"),
    st.text(alphabet="aeilmnopstx:=.%{}/-+~?0123456789", max_size=15),
)
records = st.lists(terms, max_size=6).map(lambda ts: " ".join(["v=spf1", *ts]))
trees = st.recursive(
    st.builds(
        SpfRecordTree,
        domain=domains,
        txt=st.one_of(st.none(), st.lists(records, max_size=2).map(tuple)),
        error=st.text(max_size=10),
    ),
    lambda children: st.builds(
        SpfRecordTree,
        domain=domains,
        txt=st.lists(records, min_size=1, max_size=2).map(tuple),
        children=st.lists(children, max_size=3).map(tuple),
        void_terms=st.lists(st.text(max_size=5), max_size=4).map(tuple),
        ttl_s=st.integers(min_value=0, max_value=86400),
    ),
    max_leaves=8,
)


@given(trees)
def test_lint_never_raises_and_every_failure_gates(spf_tree: SpfRecordTree) -> None:
    findings = lint_spf_record(spf_tree)
    assert findings
    for found in findings:
        assert found.id == f"spf.record.{spf_tree.domain}"
        if found.status is Status.FAIL:
            assert found.outcome is Outcome.SPF_FAIL
    if any(f.status is Status.OK for f in findings):
        assert len(findings) == 1


# --- query_spf and query_spf_tree through a resolver (no sockets) ---


def test_query_spf_asks_only_the_given_resolver() -> None:
    zone: dict[tuple[str, str], list[str]] = {}
    txt(zone, DOMAIN, "v=spf1 include:_spf.example.net -all")
    txt(zone, "_spf.example.net", "v=spf1 a:mail.example.net -all")
    zone[("mail.example.net", "A")] = [IP]
    resolver = FakeResolver(zone, ttls={("mail.example.net", "A"): 120})
    ev = query_spf(IP, f"{DOMAIN}.", "mail.example.net", resolver, 2.0)
    assert ev == SpfEvaluation(
        IP, DOMAIN, SpfResult.PASS, "sender SPF authorized", 120, "include:_spf.example.net"
    )
    assert resolver.asked == [
        (DOMAIN, "TXT"),
        ("_spf.example.net", "TXT"),
        ("mail.example.net", "A"),
    ]


def test_query_spf_fail_softfail_neutral_none() -> None:
    zone: dict[tuple[str, str], list[str]] = {}
    txt(zone, "f.example.com", "v=spf1 ip4:192.0.2.1 -all")
    txt(zone, "s.example.com", "v=spf1 ~all")
    txt(zone, "n.example.com", "v=spf1 ip4:192.0.2.1")
    zone[("nospf.example.com", "A")] = [IP]
    resolver = FakeResolver(zone)
    results = {
        name: query_spf(IP, name, "", resolver, 2.0)
        for name in ("f.example.com", "s.example.com", "n.example.com", "nospf.example.com")
    }
    assert results["f.example.com"].result is SpfResult.FAIL
    assert results["f.example.com"].mechanism == "-all"
    assert results["s.example.com"].result is SpfResult.SOFTFAIL
    assert results["n.example.com"].result is SpfResult.NEUTRAL
    assert results["nospf.example.com"].result is SpfResult.NONE
    assert results["nospf.example.com"].ttl_s == DEFAULT_TTL_S  # no TXT answer carried a TTL


def test_query_spf_ipv6_matches_ip6_and_aaaa() -> None:
    zone: dict[tuple[str, str], list[str]] = {}
    txt(zone, DOMAIN, "v=spf1 ip6:2001:db8:1::/48 a:mail.example.com -all")
    zone[("mail.example.com", "AAAA")] = [IP6]
    resolver = FakeResolver(zone)
    assert query_spf("2001:db8:1::9", DOMAIN, "", resolver, 2.0).result is SpfResult.PASS
    assert query_spf(IP6, DOMAIN, "", resolver, 2.0).mechanism == "a:mail.example.com"
    assert query_spf("2001:db8:2::9", DOMAIN, "", resolver, 2.0).result is SpfResult.FAIL


def test_query_spf_counts_void_lookups_like_pyspf() -> None:
    zone: dict[tuple[str, str], list[str]] = {}
    txt(zone, DOMAIN, "v=spf1 a:v1.example.org a:v2.example.org a:v3.example.org -all")
    ev = query_spf(IP, DOMAIN, "", FakeResolver(zone), 2.0)
    assert ev.result is SpfResult.PERMERROR
    assert "Void lookup limit" in ev.explanation


@pytest.mark.parametrize(
    ("failure", "words"),
    [(dns.exception.Timeout, "no answer for TXT"), (dns.resolver.NoNameservers, "TXT example.com")],
)
def test_query_spf_dns_trouble_is_temperror(failure: type[Exception], words: str) -> None:
    ev = query_spf(IP, DOMAIN, "", FakeResolver({}, fail={DOMAIN: failure}), 2.0)
    assert (ev.result, ev.ttl_s) == (SpfResult.TEMPERROR, RETRY_TTL_S)
    assert words in ev.explanation


def test_query_spf_out_of_time_is_temperror() -> None:
    zone: dict[tuple[str, str], list[str]] = {}
    txt(zone, DOMAIN, "v=spf1 -all")
    ev = query_spf(IP, DOMAIN, "", FakeResolver(zone), 0.0)
    assert ev.result is SpfResult.TEMPERROR and "no time left" in ev.explanation


def test_query_spf_without_an_ip_or_a_domain_never_raises() -> None:
    resolver = FakeResolver({})
    assert query_spf("not-an-ip", DOMAIN, "", resolver, 2.0).result is SpfResult.PERMERROR
    assert query_spf(IP, "", "", resolver, 2.0).result is SpfResult.NONE
    assert resolver.asked == []


def test_query_spf_tree_walks_includes_and_probes_void_terms() -> None:
    zone: dict[tuple[str, str], list[str]] = {}
    txt(
        zone,
        DOMAIN,
        "v=spf1 include:a.example.net include:a.example.net a:gone.example.org mx "
        "exists:%{i}.example.org redirect=ignored.example.net -all",
    )
    txt(zone, "a.example.net", "v=spf1 include:b.example.net -all")
    txt(zone, "b.example.net", f"v=spf1 include:{DOMAIN} -all", "unrelated")
    zone[(DOMAIN, "MX")] = ["10 mail.example.com."]
    resolver = FakeResolver(zone)
    found = query_spf_tree(DOMAIN, resolver, 2.0)
    assert found.txt == (zone[(DOMAIN, "TXT")][0],)
    assert found.void_terms == ("a:gone.example.org",)
    (a,) = found.children
    assert a.domain == "a.example.net"
    (b,) = a.children
    assert b.txt == (f"v=spf1 include:{DOMAIN} -all", "unrelated")
    assert b.children == ()  # the loop back to example.com is not walked
    assert ("ignored.example.net", "TXT") not in resolver.asked  # redirect with -all: no effect
    assert next(f.summary for f in lint_spf_record(found)).startswith("SPF include loop")


def test_query_spf_tree_records_dns_errors() -> None:
    zone: dict[tuple[str, str], list[str]] = {}
    txt(zone, DOMAIN, "v=spf1 include:slow.example.net -all")
    found = query_spf_tree(
        DOMAIN, FakeResolver(zone, fail={"slow.example.net": dns.exception.Timeout}), 2.0
    )
    (slow,) = found.children
    assert slow.txt is None and "no answer within 2 s" in slow.error
    failed = query_spf_tree(
        DOMAIN, FakeResolver({}, fail={DOMAIN: dns.resolver.NoNameservers}), 2.0
    )
    assert failed.txt is None and failed.error


def test_query_spf_tree_is_bounded() -> None:
    zone: dict[tuple[str, str], list[str]] = {}
    txt(zone, DOMAIN, "v=spf1 include:i0.example.net -all")
    for i in range(60):
        txt(zone, f"i{i}.example.net", f"v=spf1 include:i{i + 1}.example.net -all")
    resolver = FakeResolver(zone)
    found = query_spf_tree(DOMAIN, resolver, 2.0)
    assert len(resolver.asked) == 40
    assert lint_spf_record(found)[0].status is Status.FAIL


def test_query_spf_mx_ptr_and_exp_answers_reach_pyspf_in_its_own_form() -> None:
    zone: dict[tuple[str, str], list[str]] = {}
    txt(zone, "mx.example.com", "v=spf1 mx -all")
    zone[("mx.example.com", "MX")] = ["20 b.example.net.", "10 a.example.net."]
    zone[("b.example.net", "A")] = [IP]
    txt(zone, "ptr.example.com", "v=spf1 ptr:example.net -all")
    zone[("5.113.0.203.in-addr.arpa", "PTR")] = ["mail.example.net."]
    zone[("mail.example.net", "A")] = [IP]
    txt(zone, "exp.example.com", "v=spf1 -all exp=why.example.com")
    txt(zone, "why.example.com", "%{i} may not send for %{d}")
    resolver = FakeResolver(zone)
    assert query_spf(IP, "mx.example.com", "", resolver, 2.0).result is SpfResult.PASS
    assert ("a.example.net", "A") in resolver.asked  # MX hosts looked up by preference
    assert query_spf(IP, "ptr.example.com", "", resolver, 2.0).mechanism == "ptr:example.net"
    refused = query_spf(IP, "exp.example.com", "", resolver, 2.0)
    assert refused.explanation == f"{IP} may not send for exp.example.com"
