"""DNS blocklists: query names (RFC 5782), every branch of interpret_dnsbl and interpret_static_ip."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reputable.checks.blocklists import DnsblKind, DnsblZone
from reputable.checks.dnsbl import (
    DnsblAnswer,
    interpret_dnsbl,
    interpret_static_ip,
    query_dnsbl,
    query_name,
)
from reputable.checks.findings import Outcome, Status
from reputable.config import DnsConfig, Nameserver
from reputable.resolver import build_dnsbl_resolver, nameserver_addresses

IP = "203.0.113.5"
IP6 = "2001:db8::25"
ZEN = "zen.spamhaus.org"
TEST_ZONE = "bl.example.test"


def listed(zone: str, *codes: str, txt: tuple[str, ...] = (), target: str = IP) -> DnsblAnswer:
    return DnsblAnswer(zone, target, codes, txt)


# --- query names ---


def test_query_name_ipv4_is_the_reversed_octets() -> None:
    # RFC 5782 §2.1's example.
    assert query_name("192.0.2.99", "zone") == "99.2.0.192.zone"


def test_query_name_ipv6_is_32_reversed_nibbles() -> None:
    # RFC 5782 §2.4's example.
    assert query_name("2001:db8:1:2:3:4:567:89ab", "zone") == (
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zone"
    )


def test_query_name_of_a_domain_is_the_domain_under_the_zone() -> None:
    # RFC 5782 §3: name-based lists are asked about the name itself.
    assert query_name("Example.COM.", "dbl.spamhaus.org.") == "example.com.dbl.spamhaus.org"


def test_query_name_of_an_ipv4_mapped_address_asks_as_ipv4() -> None:
    assert query_name("::ffff:192.0.2.99", "zone") == "99.2.0.192.zone"


def test_query_name_zone_case_and_dot_are_normalised() -> None:
    assert query_name(IP, "ZEN.Spamhaus.org.") == "5.113.0.203.zen.spamhaus.org"


# --- interpret_dnsbl: not listed, listed ---


def test_nxdomain_is_not_listed() -> None:
    finding = interpret_dnsbl(DnsblAnswer(ZEN, IP, (), ttl_s=120))
    assert (finding.id, finding.status, finding.outcome) == (f"dnsbl.{ZEN}.{IP}", Status.OK, None)
    assert "not listed" in finding.summary
    assert finding.ttl_s == 120


def test_listing_fails_with_ip_zone_code_and_reason() -> None:
    reason = "https://check.spamhaus.org/query/ip/203.0.113.5"
    finding = interpret_dnsbl(listed(ZEN, "127.0.0.2", txt=(reason,)))
    assert (finding.status, finding.outcome) == (Status.FAIL, Outcome.DNSBL)
    assert finding.summary.startswith(f"sending IP {IP} is listed on {ZEN} (127.0.0.2")
    assert reason in finding.summary
    assert "check.spamhaus.org" in finding.fix


@pytest.mark.parametrize(
    ("zone", "procedure"),
    [
        (ZEN, "check.spamhaus.org"),
        ("sbl.spamhaus.org", "check.spamhaus.org"),
        ("bl.spamcop.net", "SpamCop"),
        ("psbl.surriel.com", "psbl.org"),
        ("b.barracudacentral.org", "barracudacentral.org"),
        (TEST_ZONE, f"removal page of {TEST_ZONE}"),
    ],
)
def test_fix_names_the_lists_delisting_procedure(zone: str, procedure: str) -> None:
    finding = interpret_dnsbl(listed(zone, "127.0.0.2"))
    assert (finding.status, finding.outcome) == (Status.FAIL, Outcome.DNSBL)
    assert procedure in finding.fix


@pytest.mark.parametrize("code", ["127.0.0.3", "127.0.0.4", "127.0.0.9", "127.1.2.3", "127.0.1.2"])
def test_any_other_loopback_code_is_a_listing(code: str) -> None:
    finding = interpret_dnsbl(listed(TEST_ZONE, code))
    assert (finding.status, finding.outcome) == (Status.FAIL, Outcome.DNSBL)
    assert code in finding.summary


def test_every_code_and_reason_is_named() -> None:
    finding = interpret_dnsbl(listed(ZEN, "127.0.0.2", "127.0.0.4", txt=("one", "two")))
    for text in ("127.0.0.2", "127.0.0.4", "one", "two", "XBL"):
        assert text in finding.summary


def test_a_domain_target_is_called_a_domain() -> None:
    finding = interpret_dnsbl(listed("dbl.spamhaus.org", "127.0.1.2", target="example.com"))
    assert finding.id == "dnsbl.dbl.spamhaus.org.example.com"
    assert finding.summary.startswith("domain example.com is listed")


def test_reason_text_is_one_printable_line_of_bounded_length() -> None:
    finding = interpret_dnsbl(listed(TEST_ZONE, "127.0.0.2", txt=("a\nb\x00" + "x" * 1000,)))
    assert finding.summary.isprintable()
    assert len(finding.summary) < 400


# --- Spamhaus PBL ---


@pytest.mark.parametrize("zone", [ZEN, "pbl.spamhaus.org", "key123.zen.dq.spamhaus.net"])
@pytest.mark.parametrize("code", ["127.0.0.10", "127.0.0.11"])
def test_pbl_code_means_dynamic_space(zone: str, code: str) -> None:
    finding = interpret_dnsbl(listed(zone, code))
    assert (finding.status, finding.outcome) == (Status.FAIL, Outcome.DNSBL)
    assert "dynamic/end-user" in finding.summary and "Policy Block List" in finding.summary
    assert "without a static IP" in finding.summary
    assert "static IP" in finding.fix and "smarthost" in finding.fix
    assert "check.spamhaus.org" in finding.fix


def test_pbl_code_on_another_list_is_an_ordinary_listing() -> None:
    finding = interpret_dnsbl(listed(TEST_ZONE, "127.0.0.10"))
    assert (finding.status, finding.outcome) == (Status.FAIL, Outcome.DNSBL)
    assert "Policy Block List" not in finding.summary


def test_pbl_with_a_spam_listing_names_both() -> None:
    finding = interpret_dnsbl(listed(ZEN, "127.0.0.2", "127.0.0.11"))
    assert (finding.status, finding.outcome) == (Status.FAIL, Outcome.DNSBL)
    assert "is listed" in finding.summary and "Policy Block List" in finding.summary
    assert "smarthost" in finding.fix


# --- answers that are never a listing ---


@pytest.mark.parametrize(
    ("code", "fix_words"),
    [
        ("127.255.255.252", ["zone name"]),
        ("127.255.255.254", ["dnsbl_nameservers", "8.8.8.8", "data feed"]),
        ("127.255.255.255", ["dnsbl_nameservers", "data feed"]),
        ("127.255.255.1", ["documentation"]),
    ],
)
def test_spamhaus_error_codes_are_dns_errors_not_listings(code: str, fix_words: list[str]) -> None:
    finding = interpret_dnsbl(listed(ZEN, code))
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert code in finding.summary and "not a listing" in finding.summary
    for word in fix_words:
        assert word in finding.fix


def test_error_codes_are_errors_on_any_list() -> None:
    finding = interpret_dnsbl(listed(TEST_ZONE, "127.255.255.254"))
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)


def test_public_resolver_code_explains_itself() -> None:
    finding = interpret_dnsbl(listed(ZEN, "127.255.255.254"))
    assert "public/open resolver" in finding.summary


@pytest.mark.parametrize("code", ["127.0.0.1", "192.0.2.1", "198.51.100.7", "0.0.0.0", "::1", "x"])
def test_answers_that_are_no_code_are_dns_errors(code: str) -> None:
    finding = interpret_dnsbl(listed(TEST_ZONE, code))
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "not a listing" in finding.summary and "NXDOMAIN" in finding.summary
    assert "dnsbl_nameservers" in finding.fix


def test_one_bogus_address_spoils_the_whole_answer() -> None:
    finding = interpret_dnsbl(listed(ZEN, "127.0.0.2", "127.255.255.254"))
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)


def test_dbl_answer_for_an_ip_is_an_error() -> None:
    finding = interpret_dnsbl(listed("dbl.spamhaus.org", "127.0.1.255"))
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "dnsbl_domains" in finding.fix


def test_failed_query_is_a_dns_error_with_the_reason() -> None:
    answer = DnsblAnswer(TEST_ZONE, IP, None, error="timeout: no answer within 2 s", ttl_s=60)
    finding = interpret_dnsbl(answer)
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "timeout" in finding.summary and finding.ttl_s == 60
    assert "public resolvers" not in finding.fix


def test_refused_query_gets_the_public_resolver_hint() -> None:
    finding = interpret_dnsbl(DnsblAnswer(ZEN, IP, None, error="REFUSED"))
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "REFUSED" in finding.summary
    assert "public resolvers" in finding.fix and "dnsbl_nameservers" in finding.fix


# --- interpret_static_ip ---


def test_static_ip_fails_without_outcome_on_a_pbl_code() -> None:
    finding = interpret_static_ip(IP, [listed(TEST_ZONE, "127.0.0.2"), listed(ZEN, "127.0.0.11")])
    assert (finding.id, finding.status, finding.outcome) == (f"static_ip.{IP}", Status.FAIL, None)
    assert "dynamic/end-user" in finding.summary and "127.0.0.11" in finding.summary
    assert "static IP" in finding.fix


def test_static_ip_is_ok_when_spamhaus_does_not_list_it_as_dynamic() -> None:
    for answer in (DnsblAnswer(ZEN, IP, ()), listed(ZEN, "127.0.0.2")):
        finding = interpret_static_ip(IP, [answer])
        assert (finding.status, finding.outcome) == (Status.OK, None)


def test_static_ip_cannot_tell_without_a_spamhaus_zone() -> None:
    finding = interpret_static_ip(IP, [DnsblAnswer(TEST_ZONE, IP, ())])
    assert (finding.status, finding.outcome) == (Status.UNKNOWN, None)
    assert "cannot tell" in finding.summary and ZEN in finding.fix


@pytest.mark.parametrize(
    "answer",
    [
        DnsblAnswer(ZEN, IP, None, error="REFUSED"),
        listed(ZEN, "127.255.255.254"),
        listed("pbl.spamhaus.org", "192.0.2.1"),
    ],
)
def test_static_ip_cannot_tell_when_spamhaus_gave_no_usable_answer(answer: DnsblAnswer) -> None:
    finding = interpret_static_ip(IP, [answer])
    assert (finding.status, finding.outcome) == (Status.UNKNOWN, None)
    assert "cannot tell" in finding.summary


def test_static_ip_ignores_other_addresses_and_other_spamhaus_lists() -> None:
    answers = [
        listed(ZEN, "127.0.0.10", target="198.51.100.1"),
        listed("sbl.spamhaus.org", "127.0.0.10"),
    ]
    assert interpret_static_ip(IP, answers).status is Status.UNKNOWN


def test_static_ip_matches_ipv6_in_any_spelling() -> None:
    answer = listed(ZEN, "127.0.0.10", target="2001:0DB8:0::25")
    assert interpret_static_ip(IP6, [answer]).status is Status.FAIL


def test_static_ip_ttl_is_the_smallest_used() -> None:
    answers = [
        DnsblAnswer(ZEN, IP, (), ttl_s=90),
        DnsblAnswer("pbl.spamhaus.org", IP, (), ttl_s=40),
    ]
    assert interpret_static_ip(IP, answers).ttl_s == 40


# --- properties ---

_codes = st.one_of(
    st.ip_addresses(v=4, network="127.0.0.0/8").map(str),
    st.ip_addresses(v=4, network="127.255.255.0/24").map(str),
    st.sampled_from(["127.0.0.1", "127.0.0.2", "127.0.0.10", "127.0.0.11", "127.0.1.255"]),
    st.ip_addresses().map(str),
    st.text(max_size=16),
)
_zones = st.one_of(
    st.sampled_from([ZEN, "pbl.spamhaus.org", "dbl.spamhaus.org", "bl.spamcop.net", TEST_ZONE]),
    st.text(max_size=20),
)
_targets = st.one_of(
    st.ip_addresses().map(str), st.sampled_from(["example.com"]), st.text(max_size=20)
)
_answers = st.builds(
    DnsblAnswer,
    zone=_zones,
    target=_targets,
    addresses=st.one_of(st.none(), st.lists(_codes, max_size=4).map(tuple)),
    txt=st.lists(st.text(max_size=40), max_size=3).map(tuple),
    error=st.text(max_size=20),
    ttl_s=st.integers(0, 86400),
)


def _never_a_listing(address: str) -> bool:
    try:
        code = ipaddress.ip_address(address)
    except ValueError:
        return True
    return code not in ipaddress.ip_network("127.0.0.0/8") or code in ipaddress.ip_network(
        "127.255.255.0/24"
    )


@given(_answers)
def test_interpret_dnsbl_never_raises_and_never_lists_an_error_code(answer: DnsblAnswer) -> None:
    finding = interpret_dnsbl(answer)
    assert finding.id == f"dnsbl.{answer.zone}.{answer.target}"
    assert finding.ttl_s == answer.ttl_s
    if finding.status is Status.FAIL:
        assert finding.outcome is Outcome.DNSBL
    if any(_never_a_listing(address) for address in answer.addresses or ()):
        assert finding.status is Status.WARN
        assert finding.outcome is Outcome.DNS_ERROR
    if answer.addresses is None:
        assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)


@given(st.sampled_from([IP, IP6]), st.lists(_answers, max_size=5))
def test_interpret_static_ip_never_raises(ip: str, answers: list[DnsblAnswer]) -> None:
    finding = interpret_static_ip(ip, answers)
    assert finding.id == f"static_ip.{ip}"
    assert finding.outcome is None
    if finding.status is Status.FAIL:
        pbl = {"127.0.0.10", "127.0.0.11"}
        assert any(pbl & set(answer.addresses or ()) for answer in answers)


# --- query_dnsbl, through a resolver that answers from a table ---


class ListResolver(dns.resolver.Resolver):
    """A and TXT answers from a table (missing: NXDOMAIN; a string: that rcode); logs queries."""

    def __init__(self, table: dict[tuple[str, str], list[str] | str]) -> None:
        super().__init__(configure=False)
        self.table = table
        self.asked: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def resolve(  # type: ignore[override]
        self, qname: dns.name.Name, rdtype: str, **_: Any
    ) -> dns.resolver.Answer:
        key = (qname.to_text(omit_final_dot=True), rdtype)
        with self.lock:
            self.asked.append(key)
        entry = self.table.get(key)
        query = dns.message.make_query(qname, rdtype)
        response = dns.message.make_response(query)
        if entry is None:
            raise dns.resolver.NXDOMAIN(  # type: ignore[no-untyped-call]
                qnames=[qname], responses={}
            )
        if isinstance(entry, str):
            failure = ("127.0.0.1@53", False, 53, entry, response)
            raise dns.resolver.NoNameservers(  # type: ignore[no-untyped-call]
                request=query, errors=[failure]
            )
        response.answer.append(dns.rrset.from_text_list(qname, 600, "IN", rdtype, entry))
        parsed = dns.message.from_wire(response.to_wire())
        assert isinstance(parsed, dns.message.QueryMessage)
        return dns.resolver.Answer(
            qname, dns.rdatatype.from_text(rdtype), dns.rdataclass.IN, parsed
        )


def test_query_dnsbl_asks_every_pair_in_order_and_txt_only_when_listed() -> None:
    resolver = ListResolver(
        {
            ("5.113.0.203.bl.example.test", "A"): ["127.0.0.2"],
            ("5.113.0.203.bl.example.test", "TXT"): ['"spam seen"'],
            ("6.113.0.203.zen.spamhaus.org", "A"): "REFUSED",
        }
    )
    zones = [DnsblZone.named(TEST_ZONE), DnsblZone.named(ZEN)]
    found = query_dnsbl([IP, "203.0.113.6"], zones, resolver, 1.0)
    assert [(a.target, a.zone) for a in found] == [
        (IP, TEST_ZONE),
        (IP, ZEN),
        ("203.0.113.6", TEST_ZONE),
        ("203.0.113.6", ZEN),
    ]
    generic, zen = DnsblKind.GENERIC, DnsblKind.SPAMHAUS_ZEN
    assert found[0] == DnsblAnswer(TEST_ZONE, IP, ("127.0.0.2",), ("spam seen",), "", 600, generic)
    assert found[1] == DnsblAnswer(ZEN, IP, (), ttl_s=300, kind=zen)
    assert found[3].addresses is None and found[3].error == "REFUSED"
    txt_asked = [name for name, rdtype in resolver.asked if rdtype == "TXT"]
    assert txt_asked == ["5.113.0.203.bl.example.test"]


def test_query_dnsbl_listing_without_txt_is_still_listed() -> None:
    resolver = ListResolver({("5.113.0.203.bl.example.test", "A"): ["127.0.0.2"]})
    (answer,) = query_dnsbl([IP], [DnsblZone(TEST_ZONE, DnsblKind.SPAMCOP)], resolver, 1.0)
    assert answer == DnsblAnswer(TEST_ZONE, IP, ("127.0.0.2",), (), "", 600, DnsblKind.SPAMCOP)


def test_query_dnsbl_with_nothing_to_ask_asks_nothing() -> None:
    resolver = ListResolver({})
    assert query_dnsbl([], [DnsblZone.named(ZEN)], resolver, 1.0) == []
    assert query_dnsbl([IP], [], resolver, 1.0) == []
    assert resolver.asked == []


# --- the DNSBL resolver ---


def test_dnsbl_resolver_uses_the_dnsbl_nameservers() -> None:
    config = DnsConfig(
        nameservers=(Nameserver("192.0.2.53"),),
        dnsbl_nameservers=(Nameserver("127.0.0.1", 5353),),
        timeout_s=1.5,
    )
    resolver = build_dnsbl_resolver(config)
    assert nameserver_addresses(resolver) == [("127.0.0.1", 5353)]
    assert resolver.lifetime == 1.5


def test_dnsbl_resolver_falls_back_to_the_nameservers() -> None:
    resolver = build_dnsbl_resolver(DnsConfig(nameservers=(Nameserver("192.0.2.53"),)))
    assert nameserver_addresses(resolver) == [("192.0.2.53", 53)]


def test_dnsbl_resolver_falls_back_to_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 198.51.100.53\n")
    resolver = build_dnsbl_resolver(DnsConfig(), resolv_conf=conf)
    assert nameserver_addresses(resolver) == [("198.51.100.53", 53)]
