"""SPF (pyspf), DMARC (the RFC 9989 tree walk), MX and DKIM key checks against the real in-process DNS server.

Every name lives under a fresh `<token>.rc.test` per test and is removed
(with its drops) afterwards. pyspf's own lookup function is made to fail for
the whole module, and the server's query log shows each name pyspf looked
up arriving at our server: nothing goes through dnspython's default resolver.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import dns.resolver
import pytest
import spf

from reputable.checks.dkimdns import interpret_dkim_record, query_dkim_records
from reputable.checks.dmarc import (
    DkimSignature,
    KeyRecord,
    interpret_dmarc,
    org_domain_of,
    query_dmarc,
)
from reputable.checks.findings import Outcome, Status
from reputable.checks.mx import interpret_mx, query_mx
from reputable.checks.spf import (
    SpfResult,
    interpret_spf,
    lint_spf_record,
    query_spf,
    query_spf_tree,
)
from reputable.config import Nameserver
from reputable.keys.dnscheck import DnsStatus
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import generate_private_key
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.scratch import LOOKUP_TIMEOUT_S, ScratchRecords

pytestmark = pytest.mark.integration

TIMEOUT = LOOKUP_TIMEOUT_S
SLACK = 0.75  # scheduling slack on top of a timeout, for the elapsed-time bounds
IP = "203.0.113.5"
IP6 = "2001:db8:5::25"


@pytest.fixture(autouse=True)
def no_global_pyspf_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspf's module-level lookup (dnspython's default resolver) must never run."""

    def refuse(*args: Any, **kwargs: Any) -> list[Any]:
        raise AssertionError(f"spf.DNSLookup called with {args}: pyspf bypassed our resolver")

    monkeypatch.setattr(spf, "DNSLookup", refuse)


def asked_here(server: DnsServer, name: str, rdtype: str) -> int:
    """How many queries for name/type reached `server` on its main address."""
    return sum(
        1
        for q in server.queries
        if q.qname == name and q.qtype == rdtype and q.listener == server.address
    )


# --- SPF through pyspf ---


def test_spf_dash_all_without_our_ip_fails(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    domain = records.name("fail")
    records.txt(domain, "v=spf1 ip4:198.51.100.0/24 -all")

    ev = query_spf(IP, domain, f"mail.{domain}", resolver, TIMEOUT)

    assert (ev.result, ev.mechanism) == (SpfResult.FAIL, "-all")
    found = interpret_spf(ev)
    assert (found.id, found.status, found.outcome) == (
        f"spf.{domain}.{IP}",
        Status.FAIL,
        Outcome.SPF_FAIL,
    )
    assert f"does not allow {IP} (-all)" in found.summary
    assert asked_here(dns_server, domain, "TXT") == 1  # pyspf asked our server, once


def test_spf_tilde_all_softfails(records: ScratchRecords, resolver: dns.resolver.Resolver) -> None:
    domain = records.name("soft")
    records.txt(domain, "v=spf1 ip4:198.51.100.7 ~all")

    found = interpret_spf(query_spf(IP, domain, "", resolver, TIMEOUT))

    assert (found.status, found.outcome) == (Status.FAIL, Outcome.SPF_SOFTFAIL)


def test_spf_pass_through_include_and_a(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    domain, spf_host, out = records.name("pass"), records.name("_spf"), records.name("out")
    records.txt(domain, f"v=spf1 include:{spf_host} -all")
    records.txt(spf_host, f"v=spf1 a:{out} -all")
    records.a(out, IP, ttl=120)

    ev = query_spf(IP, domain, out, resolver, TIMEOUT)

    assert (ev.result, ev.mechanism) == (SpfResult.PASS, f"include:{spf_host}")
    assert ev.ttl_s == 120  # the smallest TTL of the answers used
    assert interpret_spf(ev).status is Status.OK
    for name, rdtype in ((domain, "TXT"), (spf_host, "TXT"), (out, "A")):
        assert asked_here(dns_server, name, rdtype) == 1, (name, rdtype)
    assert only_ok(lint_spf_record(query_spf_tree(domain, resolver, TIMEOUT)))


def only_ok(findings: list[Any]) -> bool:
    return len(findings) == 1 and findings[0].status is Status.OK


def test_include_chain_of_eleven_lookups_is_a_permerror(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    domain = records.name("chain")
    links = [records.name(f"i{i}") for i in range(1, 12)]
    records.txt(domain, f"v=spf1 include:{links[0]} -all")
    for here, there in itertools.pairwise(links):
        records.txt(here, f"v=spf1 include:{there} -all")
    records.txt(links[-1], f"v=spf1 ip4:{IP} -all")  # our IP, but one lookup too far

    ev = query_spf(IP, domain, "", resolver, TIMEOUT)

    assert ev.result is SpfResult.PERMERROR
    assert "Too many DNS lookups" in ev.explanation
    found = interpret_spf(ev)
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.SPF_FAIL)
    assert "at most 10 DNS-querying terms" in found.fix
    assert asked_here(dns_server, links[-2], "TXT") == 1
    assert asked_here(dns_server, links[-1], "TXT") == 0  # pyspf stopped at the 11th term

    tree = query_spf_tree(domain, resolver, TIMEOUT)
    (lint,) = lint_spf_record(tree)
    assert (lint.id, lint.status, lint.outcome) == (
        f"spf.record.{domain}",
        Status.FAIL,
        Outcome.SPF_FAIL,
    )
    assert "needs 11 DNS lookups" in lint.summary
    assert asked_here(dns_server, links[-1], "TXT") == 1  # the lint walked the whole chain


def test_two_spf_records_are_a_permerror(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    domain = records.name("two")
    records.txt(domain, f"v=spf1 ip4:{IP} -all", "v=spf1 mx -all", "other text")

    ev = query_spf(IP, domain, "", resolver, TIMEOUT)

    assert ev.result is SpfResult.PERMERROR and "Two or more" in ev.explanation
    assert interpret_spf(ev).outcome is Outcome.SPF_FAIL
    (lint,) = lint_spf_record(query_spf_tree(domain, resolver, TIMEOUT))
    assert lint.status is Status.FAIL and "2 v=spf1 TXT records" in lint.summary


def test_ipv6_sender_against_ip6_and_aaaa(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    domain, host = records.name("six"), records.name("mail6")
    records.txt(domain, f"v=spf1 ip6:2001:db8:5::/48 a:{host} -all")
    records.aaaa(host, "2001:db8:7::25")

    by_range = query_spf(IP6, domain, "", resolver, TIMEOUT)
    by_a = query_spf("2001:db8:7::25", domain, "", resolver, TIMEOUT)
    outside = query_spf("2001:db8:6::25", domain, "", resolver, TIMEOUT)

    assert (by_range.result, by_range.mechanism) == (SpfResult.PASS, "ip6:2001:db8:5::/48")
    assert (by_a.result, by_a.mechanism) == (SpfResult.PASS, f"a:{host}")
    assert outside.result is SpfResult.FAIL
    assert "add ip6:2001:db8:6::25" in interpret_spf(outside).fix
    assert asked_here(dns_server, host, "AAAA") >= 1
    assert asked_here(dns_server, host, "A") == 0  # an IPv6 sender looks up AAAA only


# --- DMARC ---


def verified(domain: str) -> list[DkimSignature]:
    """One signature of `domain` whose selector publishes the signing key."""
    return [DkimSignature(domain, "s1", KeyRecord.MATCHING)]


def publish_sender(records: ScratchRecords, mail_from: str) -> None:
    """An SPF record that lets IP send with MAIL FROM `mail_from`."""
    records.txt(mail_from, f"v=spf1 ip4:{IP} -all")


def test_dmarc_reject_unaligned_mail_from_but_aligned_dkim_is_ok(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    org, bounce_org = records.name("org"), records.name("esp")
    mail_from = f"bounce.{bounce_org}"
    records.txt(f"_dmarc.{org}", "v=DMARC1; p=reject; rua=mailto:d@example.com")
    records.txt(f"_dmarc.{bounce_org}", "v=DMARC1; p=none")
    publish_sender(records, mail_from)
    spf_passed = query_spf(IP, mail_from, "", resolver, TIMEOUT).result is SpfResult.PASS

    def org_of(name: str) -> str:
        return org_domain_of(name, resolver, TIMEOUT)

    lookup = query_dmarc(org, resolver, TIMEOUT)
    found = interpret_dmarc(lookup, mail_from, spf_passed, verified(org), org_of)

    assert spf_passed and org_of(mail_from) == bounce_org
    assert (found.id, found.status, found.outcome) == (f"dmarc.{org}", Status.OK, None)
    assert f"aligned by DKIM d={org}" in found.summary


def test_dmarc_both_unaligned_fails(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    org, bounce_org = records.name("org"), records.name("esp")
    mail_from = f"bounce.{bounce_org}"
    records.txt(f"_dmarc.{org}", "v=DMARC1; p=reject")
    publish_sender(records, mail_from)
    spf_passed = query_spf(IP, mail_from, "", resolver, TIMEOUT).result is SpfResult.PASS

    found = interpret_dmarc(
        query_dmarc(org, resolver, TIMEOUT),
        mail_from,
        spf_passed,
        verified(bounce_org),
        lambda name: org_domain_of(name, resolver, TIMEOUT),
    )

    assert (found.status, found.outcome) == (Status.FAIL, Outcome.DMARC_UNALIGNED)
    assert f"p=reject at _dmarc.{org}" in found.summary
    assert f"MAIL FROM {mail_from} is not aligned with {org}" in found.summary
    assert f"no DKIM signature of {org}" in found.summary


def test_dmarc_record_of_the_org_domain_found_by_the_tree_walk(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    org = records.name("org")
    author = f"a.news.{org}"
    records.txt(f"_dmarc.{org}", "v=DMARC1; p=reject; sp=quarantine")
    records.a(author, IP)  # the Author Domain exists
    before = len(dns_server.queries)

    lookup = query_dmarc(author, resolver, TIMEOUT)

    assert lookup.policy is not None
    assert (lookup.policy.record_domain, lookup.policy.policy, lookup.policy.org_domain) == (
        org,
        "quarantine",
        org,
    )
    walked = [q.qname for q in dns_server.queries[before:] if q.qtype == "TXT"]
    assert walked == [
        f"_dmarc.{author}",
        f"_dmarc.news.{org}",
        f"_dmarc.{org}",
        f"_dmarc.{records.base}",  # no psd= tag: the walk goes on up to the TLD
        "_dmarc.rc.test",
        "_dmarc.test",
    ]
    relaxed = interpret_dmarc(
        lookup, "", False, verified(org), lambda n: org_domain_of(n, resolver, 1.0)
    )
    assert relaxed.status is Status.OK and "(relaxed)" in relaxed.summary


def test_dmarc_psd_record_stops_the_walk_and_np_applies(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    psd = records.base
    records.txt(f"_dmarc.{psd}", "v=DMARC1; p=none; np=reject; psd=y")
    author = f"ghost.org.{psd}"  # does not exist: NXDOMAIN
    before = len(dns_server.queries)

    lookup = query_dmarc(author, resolver, TIMEOUT)

    assert lookup.policy is not None
    assert (lookup.policy.record_domain, lookup.policy.org_domain, lookup.policy.policy) == (
        psd,
        f"org.{psd}",
        "reject",
    )
    asked = [(q.qname, q.qtype) for q in dns_server.queries[before:]]
    assert asked == [
        (f"_dmarc.{author}", "TXT"),
        (f"_dmarc.org.{psd}", "TXT"),
        (f"_dmarc.{psd}", "TXT"),  # psd=y: the walk stops here
        (author, "A"),  # np= applies only if the Author Domain does not exist
    ]


def test_no_dmarc_record_anywhere_warns(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    org = records.name("bare")
    found = interpret_dmarc(
        query_dmarc(org, resolver, TIMEOUT), org, True, verified(org), lambda n: n
    )
    assert (found.status, found.outcome) == (Status.WARN, None)
    assert "Gmail and Yahoo" in found.summary


# --- MX ---


def test_mx_pointing_at_the_sending_ip_is_ok_elsewhere_warns(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ours, theirs = records.name("ours"), records.name("theirs")
    records.mx(ours, (10, f"mx.{ours}"), (20, f"backup.{ours}"))
    records.a(f"mx.{ours}", "198.51.100.25")
    records.aaaa(f"backup.{ours}", IP6)
    records.mx(theirs, (10, f"mx.{theirs}"))
    records.a(f"mx.{theirs}", "198.51.100.25")

    ok = interpret_mx(query_mx(ours, resolver, TIMEOUT), [IP, "2001:db8:5:0::25"])
    elsewhere = interpret_mx(query_mx(theirs, resolver, TIMEOUT), [IP, IP6])

    assert (ok.id, ok.status) == (f"mx.{ours}", Status.OK)
    assert f"backup.{ours} ({IP6})" in ok.summary
    assert (elsewhere.status, elsewhere.outcome) == (Status.WARN, None)
    assert "resolves to a sending IP" in elsewhere.summary


# --- a dropped query: an error within the bound, never a hang ---


def test_dropped_queries_are_dns_errors_within_the_timeout(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    spf_domain, dmarc_domain, mx_domain = records.name("s"), records.name("d"), records.name("m")
    records.drop(spf_domain)
    records.drop(f"_dmarc.{dmarc_domain}")
    records.drop(mx_domain)

    started = time.monotonic()
    ev = query_spf(IP, spf_domain, "", resolver, TIMEOUT)
    spf_elapsed = time.monotonic() - started
    started = time.monotonic()
    lookup = query_dmarc(dmarc_domain, resolver, TIMEOUT)
    dmarc_elapsed = time.monotonic() - started
    started = time.monotonic()
    answers = query_mx(mx_domain, resolver, TIMEOUT)
    mx_elapsed = time.monotonic() - started
    started = time.monotonic()
    tree = query_spf_tree(spf_domain, resolver, TIMEOUT)
    tree_elapsed = time.monotonic() - started

    assert ev.result is SpfResult.TEMPERROR
    assert interpret_spf(ev).outcome is Outcome.DNS_ERROR
    dmarc = interpret_dmarc(lookup, dmarc_domain, True, verified(dmarc_domain), lambda n: n)
    assert (dmarc.status, dmarc.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    mx = interpret_mx(answers, [IP])
    assert (mx.status, mx.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    (lint,) = lint_spf_record(tree)
    assert lint.outcome is Outcome.DNS_ERROR
    for elapsed in (spf_elapsed, dmarc_elapsed, mx_elapsed, tree_elapsed):
        assert elapsed < TIMEOUT + SLACK
    assert dns_server.query_count(spf_domain, "TXT") >= 1  # it was asked, and never answered


def test_a_dropped_include_bounds_the_whole_evaluation(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    domain, slow = records.name("top"), records.name("slow")
    records.txt(domain, f"v=spf1 include:{slow} -all")
    records.drop(slow)

    started = time.monotonic()
    ev = query_spf(IP, domain, "", resolver, TIMEOUT)

    assert time.monotonic() - started < TIMEOUT + SLACK
    assert ev.result is SpfResult.TEMPERROR and slow in ev.explanation


# --- DKIM key records ---


def test_dkim_key_records_published_and_missing(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    domain = records.name("dkim")
    algorithm = Algorithm.ED25519_SHA256
    published = SigningKey(domain, "s1", algorithm, generate_private_key(algorithm, 0))
    missing = SigningKey(domain, "s2", algorithm, generate_private_key(algorithm, 0))
    name = record_name("s1", domain)
    dns_server.set_txt(
        records.own(name), *split_strings(record_value(algorithm, published.private_key))
    )
    servers = (Nameserver(*dns_server.address),)

    checks = query_dkim_records([published, missing], resolver, servers, TIMEOUT)

    assert [key.selector for key, _ in checks] == ["s1", "s2"]
    assert [check.status for _, check in checks] == [DnsStatus.MATCHING, DnsStatus.MISSING]
    ok, failed = (interpret_dkim_record(k.selector, k.domain, check) for k, check in checks)
    assert (ok.id, ok.status) == (f"dkim.s1.{domain}", Status.OK)
    assert (failed.status, failed.outcome) == (Status.FAIL, Outcome.DKIM_RECORD)
    assert "every signature with s=s2" in failed.summary
