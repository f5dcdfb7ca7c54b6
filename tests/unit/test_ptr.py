"""Reverse DNS of the sending IP: every branch of interpret_ptr, the generic-name test, `lookup`."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address
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

from reputable.checks.findings import Finding, Outcome, Status
from reputable.checks.ptr import (
    DEFAULT_TTL_S,
    MAX_PTR_NAMES,
    Lookup,
    PtrAnswers,
    generic_reason,
    interpret_ptr,
    lookup,
)

IP = IPv4Address("203.0.113.5")
IP6 = IPv6Address("2001:db8::25")
MAIL = "mail.example.com"


def answers(
    names: tuple[str, ...] | None = (MAIL,),
    forward: dict[str, tuple[str, ...] | None] | None = None,
    helo_addresses: tuple[str, ...] | None = (),
    ip: IPv4Address | IPv6Address = IP,
    error: str = "",
    ttl_s: int = 300,
) -> PtrAnswers:
    if forward is None:
        forward = {name: (str(ip),) for name in names or ()}
    return PtrAnswers(ip, names, error, forward, helo_addresses, ttl_s)


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.id.split(".", 1)[0]: finding for finding in findings}


# --- ptr.<ip> ---


def test_forward_confirmed_ptr_is_ok() -> None:
    found = by_id(interpret_ptr(answers(), MAIL))
    assert set(found) == {"ptr", "helo"}
    ptr = found["ptr"]
    assert (ptr.id, ptr.status, ptr.outcome) == (f"ptr.{IP}", Status.OK, None)
    assert MAIL in ptr.summary and "forward-confirmed" in ptr.summary


def test_no_ptr_fails_with_outcome_ptr_and_asks_the_provider() -> None:
    ptr = by_id(interpret_ptr(answers(names=()), MAIL))["ptr"]
    assert (ptr.status, ptr.outcome) == (Status.FAIL, Outcome.PTR)
    assert "no PTR" in ptr.summary
    assert "provider" in ptr.fix and "5.113.0.203.in-addr.arpa" in ptr.fix
    assert MAIL in ptr.fix and "A record" in ptr.fix


def test_ptr_resolving_elsewhere_fails_and_says_where() -> None:
    found = answers(forward={MAIL: ("198.51.100.7",)})
    ptr = by_id(interpret_ptr(found, MAIL))["ptr"]
    assert (ptr.status, ptr.outcome) == (Status.FAIL, Outcome.PTR)
    assert MAIL in ptr.summary and "198.51.100.7" in ptr.summary
    assert "not forward-confirmed" in ptr.summary
    assert f"{MAIL} -> {IP}" in ptr.fix


def test_ptr_name_without_address_fails() -> None:
    ptr = by_id(interpret_ptr(answers(forward={MAIL: ()}), MAIL))["ptr"]
    assert (ptr.status, ptr.outcome) == (Status.FAIL, Outcome.PTR)
    assert "no A record" in ptr.summary


def test_ipv6_ptr_asks_for_aaaa_in_the_fix() -> None:
    ptr = by_id(interpret_ptr(answers(names=(), ip=IP6), MAIL))["ptr"]
    assert ptr.id == f"ptr.{IP6}"
    assert "AAAA" in ptr.fix and "ip6.arpa" in ptr.fix


def test_ipv6_addresses_compare_as_addresses_not_text() -> None:
    found = answers(ip=IP6, forward={MAIL: ("2001:0DB8:0:0::0025",)})
    assert by_id(interpret_ptr(found, MAIL))["ptr"].status is Status.OK


def test_any_confirming_ptr_name_is_enough() -> None:
    other = "other.example.net"
    found = answers(names=(other, MAIL), forward={other: ("192.0.2.1",), MAIL: (str(IP),)})
    ptr = by_id(interpret_ptr(found, MAIL))["ptr"]
    assert ptr.status is Status.OK and MAIL in ptr.summary


def test_names_are_compared_without_case_or_final_dot() -> None:
    found = answers(names=("Mail.Example.COM.",), forward={"mail.example.com": (str(IP),)})
    found_ids = by_id(interpret_ptr(found, "MAIL.example.com."))
    assert found_ids["ptr"].status is Status.OK
    assert found_ids["helo"].status is Status.OK


def test_failed_ptr_lookup_is_a_dns_error_warning() -> None:
    found = answers(names=None, error="timeout: no answer within 2 s")
    ptr = by_id(interpret_ptr(found, MAIL))["ptr"]
    assert (ptr.status, ptr.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "timeout" in ptr.summary


def test_failed_forward_lookup_is_a_dns_error_not_a_failure() -> None:
    found = answers(names=("a.example.net", MAIL), forward={"a.example.net": (), MAIL: None})
    ptr = by_id(interpret_ptr(found, MAIL))["ptr"]
    assert (ptr.status, ptr.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert MAIL in ptr.summary


def test_forward_name_never_looked_up_counts_as_failed() -> None:
    ptr = by_id(interpret_ptr(answers(forward={}), MAIL))["ptr"]
    assert (ptr.status, ptr.outcome) == (Status.WARN, Outcome.DNS_ERROR)


def test_names_past_the_limit_are_not_required() -> None:
    names = tuple(f"n{i}.example.net" for i in range(MAX_PTR_NAMES + 3))
    forward: dict[str, tuple[str, ...] | None] = dict.fromkeys(names[:MAX_PTR_NAMES], ())
    ptr = by_id(interpret_ptr(answers(names=names, forward=forward), MAIL))["ptr"]
    assert (ptr.status, ptr.outcome) == (Status.FAIL, Outcome.PTR)


def test_every_finding_carries_the_smallest_ttl() -> None:
    found = interpret_ptr(answers(ttl_s=42, helo_addresses=None), "other.example.net")
    assert {finding.ttl_s for finding in found} == {42}


def test_forward_is_a_read_only_copy() -> None:
    forward: dict[str, tuple[str, ...] | None] = {MAIL: (str(IP),)}
    found = answers(forward=forward)
    forward[MAIL] = ()
    assert found.forward[MAIL] == (str(IP),)
    with pytest.raises(TypeError):
        found.forward[MAIL] = ()  # type: ignore[index]


# --- ptr_generic.<ip> ---


@pytest.mark.parametrize(
    ("name", "ip"),
    [
        ("203-0-113-5.dsl.example.net", IP),
        ("c-203-0-113-5.hsd1.example.net", IP),
        ("5.113.0.203.static.example.net", IP),
        ("static.5.113.0.203.clients.your-server.de", IP),
        ("ip-203-000-113-005.example.net", IP),
        ("host203000113005.example.net", IP),
        ("cb007105.example.net", IP),
        ("ec2-203-0-113-5.compute-1.amazonaws.com", IP),
        ("adsl-pool.example.net", IP),
        ("dynamic.example.net", IP),
        ("dyn-42.example.net", IP),
        ("ppp17.example.net", IP),
        ("dhcp.example.net", IP),
        ("cable.example.net", IP),
        ("dialup.example.net", IP),
        ("client.example.net", IP),
        ("host-42.example.net", IP),
        ("static-42.example.net", IP),
        ("ip5.ip-203-0-113.example.eu", IP),
        ("vps123.example.net", IP),
        ("42.bc.googleusercontent.com", IP),
        ("5.113.0.203.in-addr.arpa", IP),
        ("2001-db8--25.example.net", IP6),
        ("2001-0db8-0000-0000-0000-0000-0000-0025.example.net", IP6),
        ("20010db8000000000000000000000025.example.net", IP6),
    ],
)
def test_generic_names_are_an_advisory_warning(name: str, ip: IPv4Address | IPv6Address) -> None:
    assert generic_reason(name, ip)
    found = by_id(interpret_ptr(answers(names=(name,), ip=ip), name))
    generic = found["ptr_generic"]
    assert generic.id == f"ptr_generic.{ip}"
    assert (generic.status, generic.outcome) == (Status.WARN, None)
    assert name in generic.summary and "residential" in generic.summary
    assert found["ptr"].status is Status.OK  # a generic name can still be forward-confirmed


@pytest.mark.parametrize(
    "name",
    [
        MAIL,
        "mx1.example.net",
        "smtp.example.org",
        "host.example.com",
        "dynamics.example.com",
        "mail-113.example.com",
        "203-0-113-50.example.net",  # another address
        "1203-0-113-5.example.net",
        "poolside.example.org",
    ],
)
def test_own_names_are_not_generic(name: str) -> None:
    assert generic_reason(name, IP) == ""
    found = by_id(interpret_ptr(answers(names=(name,)), name))
    assert "ptr_generic" not in found


def test_generic_warning_is_absent_without_a_ptr() -> None:
    for names in (None, ()):
        found = by_id(interpret_ptr(answers(names=names), MAIL))
        assert "ptr_generic" not in found


# --- helo.<ip> ---


def test_helo_equal_to_the_ptr_name_is_ok() -> None:
    helo = by_id(interpret_ptr(answers(), MAIL))["helo"]
    assert (helo.id, helo.status, helo.outcome) == (f"helo.{IP}", Status.OK, None)


def test_helo_equal_to_the_ptr_name_must_also_resolve_to_the_ip() -> None:
    found = answers(forward={MAIL: ("192.0.2.9",)}, helo_addresses=("192.0.2.9",))
    helo = by_id(interpret_ptr(found, MAIL))["helo"]
    assert (helo.status, helo.outcome) == (Status.WARN, None)
    assert helo.summary == f"HELO {MAIL} is the PTR name of {IP}, but it does not resolve to {IP}"
    assert helo.fix == f"Give {MAIL} an A record to {IP}"


def test_helo_equal_to_the_ptr_name_whose_lookup_failed_is_not_known_to_resolve() -> None:
    found = answers(forward={MAIL: None}, helo_addresses=None)
    helo = by_id(interpret_ptr(found, MAIL))["helo"]
    assert (helo.status, helo.outcome) == (Status.WARN, None)
    assert "its lookup failed" in helo.summary and "[dns] nameservers" in helo.fix


def test_helo_resolving_to_the_ip_but_not_the_ptr_name_warns_with_both_fixes() -> None:
    found = answers(helo_addresses=("192.0.2.9", str(IP)))
    helo = by_id(interpret_ptr(found, "smtp.example.net"))["helo"]
    assert (helo.status, helo.outcome) == (Status.WARN, None)
    assert helo.summary == (
        f"PTR names {MAIL}, HELO says smtp.example.net: it resolves to {IP} but is not the "
        "PTR name, and receivers compare the two"
    )
    assert helo.fix == (
        f"Set Postfix smtp_helo_name (and [host] helo_name, if set) to {MAIL} (the PTR name), "
        f"or have the PTR of {IP} changed to smtp.example.net"
    )


def test_helo_mismatch_warns_with_both_names_and_the_postfix_fix() -> None:
    found = answers(helo_addresses=("198.51.100.1",))
    helo = by_id(interpret_ptr(found, "host.example.net"))["helo"]
    assert (helo.status, helo.outcome) == (Status.WARN, None)
    assert helo.summary.startswith(f"PTR names {MAIL}, HELO says host.example.net")
    assert "smtp_helo_name" in helo.fix and MAIL in helo.fix


def test_helo_lookup_failure_is_still_advisory() -> None:
    helo = by_id(interpret_ptr(answers(helo_addresses=None), "host.example.net"))["helo"]
    assert (helo.status, helo.outcome) == (Status.WARN, None)
    assert "failed" in helo.summary


def test_empty_helo_warns_that_it_is_unknown() -> None:
    helo = by_id(interpret_ptr(answers(), ""))["helo"]
    assert (helo.status, helo.outcome) == (Status.WARN, None)
    assert "unknown" in helo.summary and MAIL in helo.fix


@pytest.mark.parametrize("name", ["localhost", "mail", "[203.0.113.5]", "203.0.113.5"])
def test_helo_that_is_no_fqdn_warns(name: str) -> None:
    helo = by_id(interpret_ptr(answers(helo_addresses=(str(IP),)), name))["helo"]
    assert (helo.status, helo.outcome) == (Status.WARN, None)
    assert "fully-qualified" in helo.summary


def test_helo_without_ptr_warns_even_when_it_resolves_to_the_ip() -> None:
    found = answers(names=(), helo_addresses=(str(IP),))
    helo = by_id(interpret_ptr(found, MAIL))["helo"]
    assert (helo.status, helo.outcome) == (Status.WARN, None)
    assert "no PTR" in helo.summary and f"a PTR naming {MAIL}" in helo.fix


def test_helo_without_ptr_and_address_warns() -> None:
    helo = by_id(interpret_ptr(answers(names=()), MAIL))["helo"]
    assert (helo.status, helo.outcome) == (Status.WARN, None)
    assert "no PTR" in helo.summary


def test_helo_compares_with_the_confirmed_name() -> None:
    other = "other.example.net"
    found = answers(names=(other, MAIL), forward={other: (), MAIL: (str(IP),)})
    helo = by_id(interpret_ptr(found, "host.example.net"))["helo"]
    assert helo.summary.startswith(f"PTR names {MAIL},")


# --- properties ---

_ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
_names = st.one_of(
    st.sampled_from([MAIL, "203-0-113-5.dsl.example.net", "x.example", "", ".", "UPPER.Example."]),
    st.text(max_size=30),
)
_addresses = st.one_of(st.none(), st.lists(st.one_of(_ips.map(str), st.text(max_size=12))))


@st.composite
def _ptr_answers(draw: st.DrawFn) -> PtrAnswers:
    ip = draw(_ips)
    names = draw(st.one_of(st.none(), st.lists(_names, max_size=4).map(tuple)))
    pool = list(names or ()) + draw(st.lists(_names, max_size=2))
    forward: dict[str, tuple[str, ...] | None] = {}
    for name in pool:
        if draw(st.booleans()):  # sometimes a name was never looked up
            addresses = draw(_addresses)
            forward[name] = tuple(addresses) if addresses is not None else None
    helo = draw(_addresses)
    return PtrAnswers(
        ip,
        names,
        draw(st.text(max_size=20)),
        forward,
        tuple(helo) if helo is not None else None,
        draw(st.integers(0, 86400)),
    )


@given(_ptr_answers(), _names)
def test_interpret_ptr_never_raises_and_fail_always_gates(found: PtrAnswers, helo: str) -> None:
    findings = interpret_ptr(found, helo)
    prefixes = [finding.id.split(".", 1)[0] for finding in findings]
    assert prefixes[0] == "ptr" and prefixes[-1] == "helo"
    assert set(prefixes) <= {"ptr", "ptr_generic", "helo"}
    for finding in findings:
        assert finding.id.endswith(str(found.ip))
        assert finding.ttl_s == found.ttl_s
        if finding.status is Status.FAIL:
            assert finding.outcome is not None
    if found.names is None:
        assert findings[0].outcome is Outcome.DNS_ERROR


@given(st.text(max_size=40), _ips)
def test_generic_reason_never_raises(name: str, ip: IPv4Address | IPv6Address) -> None:
    assert isinstance(generic_reason(name, ip), str)


# --- lookup, through a resolver that answers from a table ---


def reparsed(message: dns.message.Message) -> dns.message.QueryMessage:
    """The message as a client receives it (sections appended by hand are indexed only then)."""
    parsed = dns.message.from_wire(message.to_wire())
    assert isinstance(parsed, dns.message.QueryMessage)
    return parsed


class TableResolver(dns.resolver.Resolver):
    """Answers (name, type) from a table: a list of rdata texts, an rcode name or an exception."""

    def __init__(self, table: dict[tuple[str, str], Any], ttl: int = 300) -> None:
        super().__init__(configure=False)
        self.table = table
        self.ttl = ttl
        self.asked: list[tuple[str, str]] = []

    def resolve(  # type: ignore[override]
        self, qname: dns.name.Name, rdtype: str, **_: Any
    ) -> dns.resolver.Answer:
        key = (qname.to_text(omit_final_dot=True), rdtype)
        self.asked.append(key)
        entry = self.table.get(key, "NXDOMAIN")
        query = dns.message.make_query(qname, rdtype)
        response = dns.message.make_response(query)
        assert isinstance(response, dns.message.QueryMessage)
        if isinstance(entry, Exception):
            raise entry
        if entry == "NXDOMAIN":
            response.set_rcode(dns.rcode.NXDOMAIN)
            raise dns.resolver.NXDOMAIN(  # type: ignore[no-untyped-call]
                qnames=[qname], responses={qname: response}
            )
        if isinstance(entry, str):
            failure = (str(self.nameservers), False, 53, entry, response)
            raise dns.resolver.NoNameservers(  # type: ignore[no-untyped-call]
                request=query, errors=[failure]
            )
        if entry:
            response.answer.append(dns.rrset.from_text_list(qname, self.ttl, "IN", rdtype, entry))
        response = reparsed(response)
        return dns.resolver.Answer(
            qname, dns.rdatatype.from_text(rdtype), dns.rdataclass.IN, response
        )


def test_lookup_returns_records_and_their_ttl() -> None:
    resolver = TableResolver({(MAIL, "A"): ["203.0.113.5", "203.0.113.6"]}, ttl=77)
    found = lookup(resolver, MAIL, "A", 1.0)
    assert sorted(found.records or ()) == ["203.0.113.5", "203.0.113.6"]
    assert (found.ttl_s, found.error) == (77, "")


def test_lookup_ptr_names_are_lower_case_without_final_dot() -> None:
    resolver = TableResolver({("5.113.0.203.in-addr.arpa", "PTR"): ["Mail.Example.COM."]})
    found = lookup(resolver, IP.reverse_pointer, "PTR", 1.0)
    assert found.records == (MAIL,)


def test_lookup_joins_the_strings_of_a_txt_record() -> None:
    resolver = TableResolver({(MAIL, "TXT"): ['"listed " "here"']})
    assert lookup(resolver, MAIL, "TXT", 1.0).records == ("listed here",)


def test_lookup_nxdomain_and_nodata_are_empty() -> None:
    resolver = TableResolver({(MAIL, "A"): []})
    assert lookup(resolver, MAIL, "A", 1.0) == Lookup((), DEFAULT_TTL_S)
    assert lookup(resolver, "absent.example.com", "A", 1.0) == Lookup((), DEFAULT_TTL_S)


def test_lookup_nxdomain_ttl_is_the_soa_minimum() -> None:
    class SoaResolver(TableResolver):
        def resolve(  # type: ignore[override]
            self, qname: dns.name.Name, rdtype: str, **_: Any
        ) -> dns.resolver.Answer:
            response = dns.message.make_response(dns.message.make_query(qname, rdtype))
            response.set_rcode(dns.rcode.NXDOMAIN)
            soa = "ns.example.com. host.example.com. 1 3600 600 86400 60"
            response.authority.append(
                dns.rrset.from_text_list("example.com.", 900, "IN", "SOA", [soa])
            )
            raise dns.resolver.NXDOMAIN(  # type: ignore[no-untyped-call]
                qnames=[qname], responses={qname: reparsed(response)}
            )

    assert lookup(SoaResolver({}), "absent.example.com", "A", 1.0) == Lookup((), 60)


def test_lookup_nodata_ttl_is_the_soa_ttl_even_above_the_default() -> None:
    class NodataResolver(TableResolver):
        def resolve(  # type: ignore[override]
            self, qname: dns.name.Name, rdtype: str, **_: Any
        ) -> dns.resolver.Answer:
            response = dns.message.make_response(dns.message.make_query(qname, rdtype))
            soa = "ns.example.com. host.example.com. 1 3600 600 86400 7200"
            response.authority.append(
                dns.rrset.from_text_list("example.com.", 3600, "IN", "SOA", [soa])
            )
            return dns.resolver.Answer(
                qname, dns.rdatatype.from_text(rdtype), dns.rdataclass.IN, reparsed(response)
            )

    assert lookup(NodataResolver({}), MAIL, "A", 1.0) == Lookup((), 3600)


TIMED_OUT = dns.resolver.LifetimeTimeout(timeout=1.5, errors=[])  # type: ignore[no-untyped-call]
YX = dns.resolver.YXDOMAIN()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("REFUSED", "REFUSED"),
        ("SERVFAIL", "SERVFAIL"),
        (TIMED_OUT, "timeout: no answer within 1.5 s"),
        (YX, "YXDOMAIN"),
    ],
)
def test_lookup_failures_come_back_as_short_errors(entry: object, error: str) -> None:
    resolver = TableResolver({(MAIL, "A"): entry})
    assert lookup(resolver, MAIL, "A", 1.5) == Lookup(None, DEFAULT_TTL_S, error)


def test_lookup_of_an_impossible_name_is_an_error() -> None:
    found = lookup(TableResolver({}), "a" * 64 + ".example.com", "A", 1.0)
    assert found.records is None and found.error


def test_ip_forms_do_not_match_a_neighbouring_address() -> None:
    other = ipaddress.ip_address("203.0.113.50")
    assert generic_reason("203-0-113-5.example.net", other) == ""
