"""PTR/FCrDNS, HELO and DNSBL checks against the harness's real DNS server, over real packets.

Every name set here lives under a name this module owns (HOSTS, the test
list ZONE and the reverse names of its own documentation IPs) or, for the PBL
scenario, one query name under zen.spamhaus.org; the `records` fixture undoes
all of it, so the session's shared server is left as found.
"""

from __future__ import annotations

import time

import dns.name
import dns.resolver
import pytest

from reputable.checks.blocklists import DnsblKind, DnsblZone
from reputable.checks.dnsbl import (
    interpret_dnsbl,
    interpret_static_ip,
    query_dnsbl,
    query_name,
)
from reputable.checks.findings import Finding, Outcome, Status
from reputable.checks.ptr import interpret_ptr, query_ptr
from reputable.config import DnsConfig, Nameserver
from reputable.resolver import build_dnsbl_resolver
from tests.integration.harness.dnsserver import DnsServer, reverse_name
from tests.integration.harness.scratch import LOOKUP_TIMEOUT_S, ScratchRecords

pytestmark = pytest.mark.integration

TIMEOUT = LOOKUP_TIMEOUT_S
SLACK = 0.75  # scheduling and thread start-up on a loaded CI host
HOSTS = "host-checks.example.net"
ZONE = "bl.example.test"
ZEN = "zen.spamhaus.org"


def ptr_findings(ip: str, helo: str, resolver: dns.resolver.Resolver) -> dict[str, Finding]:
    found = interpret_ptr(query_ptr(ip, helo, resolver, TIMEOUT), helo)
    return {finding.id.split(".", 1)[0]: finding for finding in found}


def named(*zones: str) -> list[DnsblZone]:
    """Zones whose kind their names say, as plain `[checks] dnsbl` strings are read."""
    return [DnsblZone.named(zone) for zone in zones]


def dnsbl_finding(ip: str, zone: str, resolver: dns.resolver.Resolver) -> Finding:
    (answer,) = query_dnsbl([ip], [DnsblZone.named(zone)], resolver, TIMEOUT)
    return interpret_dnsbl(answer)


# --- PTR, FCrDNS and HELO ---


def test_clean_host_passes_every_check(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ip, name = "203.0.113.10", f"mail.{HOSTS}"
    records.ptr(ip, name, ttl=120)
    records.a(name, ip, ttl=600)
    found = ptr_findings(ip, name.upper(), resolver)
    assert set(found) == {"ptr", "helo"}  # no generic-name warning
    assert (found["ptr"].id, found["ptr"].status) == (f"ptr.{ip}", Status.OK)
    assert (found["helo"].id, found["helo"].status) == (f"helo.{ip}", Status.OK)
    # The smallest TTL of the answers used. (The harness serves every record with TTL 0
    # for now, whatever `ttl` says; tests/unit/test_ptr.py holds the exact arithmetic.)
    assert 0 <= found["ptr"].ttl_s <= 120
    listing = dnsbl_finding(ip, ZONE, resolver)
    assert (listing.id, listing.status, listing.outcome) == (f"dnsbl.{ZONE}.{ip}", Status.OK, None)
    assert listing.ttl_s == 300  # NXDOMAIN without an SOA


def test_no_ptr_fails(records: ScratchRecords, resolver: dns.resolver.Resolver) -> None:
    ip = "203.0.113.11"
    records.a(f"mail11.{HOSTS}", ip)
    found = ptr_findings(ip, f"mail11.{HOSTS}", resolver)
    assert (found["ptr"].status, found["ptr"].outcome) == (Status.FAIL, Outcome.PTR)
    assert "no PTR" in found["ptr"].summary
    # The HELO name still resolves to the IP, but there is no PTR name for it to equal.
    assert (found["helo"].status, found["helo"].outcome) == (Status.WARN, None)
    assert "no PTR" in found["helo"].summary


def test_ptr_not_forward_confirmed_fails(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ip, name = "203.0.113.12", f"mail12.{HOSTS}"
    records.ptr(ip, name)
    records.a(name, "198.51.100.12")
    found = ptr_findings(ip, name, resolver)
    assert (found["ptr"].status, found["ptr"].outcome) == (Status.FAIL, Outcome.PTR)
    assert name in found["ptr"].summary and "198.51.100.12" in found["ptr"].summary


def test_ptr_not_matching_helo_warns(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ip, name, helo = "203.0.113.13", f"mail13.{HOSTS}", f"other13.{HOSTS}"
    records.ptr(ip, name)
    records.a(name, ip)
    records.a(helo, "198.51.100.13")
    found = ptr_findings(ip, helo, resolver)
    assert found["ptr"].status is Status.OK
    assert (found["helo"].status, found["helo"].outcome) == (Status.WARN, None)
    assert name in found["helo"].summary and helo in found["helo"].summary
    assert "smtp_helo_name" in found["helo"].fix


def test_helo_resolving_to_the_ip_but_not_the_ptr_name_warns(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ip, name, helo = "203.0.113.15", f"mail15.{HOSTS}", f"smtp15.{HOSTS}"
    records.ptr(ip, name)
    records.a(name, ip)
    records.a(helo, ip)  # resolves to the sending IP: not enough, it must be the PTR name
    found = ptr_findings(ip, helo, resolver)
    assert found["ptr"].status is Status.OK
    assert (found["helo"].status, found["helo"].outcome) == (Status.WARN, None)
    assert f"resolves to {ip} but is not the PTR name" in found["helo"].summary
    assert f"smtp_helo_name (and [host] helo_name, if set) to {name}" in found["helo"].fix
    assert f"the PTR of {ip} changed to {helo}" in found["helo"].fix


def test_generic_ptr_warns(records: ScratchRecords, resolver: dns.resolver.Resolver) -> None:
    ip, name = "203.0.113.14", f"203-0-113-14.dsl.{HOSTS}"
    records.ptr(ip, name)
    records.a(name, ip)
    found = ptr_findings(ip, name, resolver)
    assert found["ptr"].status is Status.OK
    generic = found["ptr_generic"]
    assert (generic.id, generic.status, generic.outcome) == (f"ptr_generic.{ip}", Status.WARN, None)


def test_ipv6_sending_address(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    ip, name = "2001:db8::25", f"mail6.{HOSTS}"
    records.ptr(ip, name)
    records.aaaa(name, "2001:db8:0:0::25")
    records.a(name, "203.0.113.25")  # an A record must not confirm an IPv6 PTR
    found = ptr_findings(ip, name, resolver)
    assert (found["ptr"].id, found["ptr"].status) == (f"ptr.{ip}", Status.OK)
    assert found["helo"].status is Status.OK
    assert dns_server.query_count(reverse_name(ip), "PTR") >= 1
    assert dns_server.query_count(name, "AAAA") >= 1

    nibbles = query_name(ip, ZONE)
    assert nibbles.startswith("5.2.0.0.0.0.0.0.") and nibbles.endswith(".8.b.d.0.1.0.0.2." + ZONE)
    records.a(nibbles, "127.0.0.2")
    listing = dnsbl_finding(ip, ZONE, resolver)
    assert (listing.id, listing.status, listing.outcome) == (
        f"dnsbl.{ZONE}.{ip}",
        Status.FAIL,
        Outcome.DNSBL,
    )
    assert dns_server.query_count(nibbles, "A") >= 1


# --- DNSBL answers ---


def test_listed_with_a_txt_reason_fails(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    ip = "203.0.113.15"
    name = query_name(ip, ZONE)
    reason = f"Listed: see https://{ZONE}/lookup?ip={ip}"
    records.a(name, "127.0.0.2")
    records.txt(name, reason)
    (answer,) = query_dnsbl([ip], named(ZONE), resolver, TIMEOUT)
    assert answer.addresses == ("127.0.0.2",) and answer.txt == (reason,)
    finding = interpret_dnsbl(answer)
    assert (finding.status, finding.outcome) == (Status.FAIL, Outcome.DNSBL)
    assert ip in finding.summary and ZONE in finding.summary and reason in finding.summary
    clean = query_name("203.0.113.10", ZONE)
    query_dnsbl(["203.0.113.10"], named(ZONE), resolver, TIMEOUT)
    assert dns_server.query_count(clean, "TXT") == 0  # TXT is asked only when listed


def test_public_resolver_code_is_an_error_not_a_listing(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ip = "203.0.113.16"
    records.a(query_name(ip, ZEN), "127.255.255.254")
    finding = dnsbl_finding(ip, ZEN, resolver)
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "dnsbl_nameservers" in finding.fix
    static = interpret_static_ip(ip, query_dnsbl([ip], named(ZEN), resolver, TIMEOUT))
    assert (static.status, static.outcome) == (Status.UNKNOWN, None)  # the dnsbl row says why


def test_pbl_code_on_zen_means_no_static_ip(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ip = "203.0.113.17"
    records.a(query_name(ip, ZEN), "127.0.0.10")
    answers = query_dnsbl([ip], named(ZEN, ZONE), resolver, TIMEOUT)
    zen, other = (interpret_dnsbl(answer) for answer in answers)
    assert (zen.id, zen.status, zen.outcome) == (f"dnsbl.{ZEN}.{ip}", Status.FAIL, Outcome.DNSBL)
    assert "static IP" in zen.summary
    assert other.status is Status.OK
    static = interpret_static_ip(ip, answers)
    assert (static.id, static.status, static.outcome) == (f"static_ip.{ip}", Status.FAIL, None)


DQS = "abcdefghijklmnopqrstuvwxyz.zen.dq.spamhaus.net"  # <key>.zen.dq.spamhaus.net


def test_a_dqs_zone_is_read_as_spamhaus_zen_by_its_name(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    pbl_ip, error_ip = "203.0.113.26", "203.0.113.27"
    records.a(query_name(pbl_ip, DQS), "127.0.0.11")
    records.a(query_name(error_ip, DQS), "127.255.255.254")
    (zone,) = named(DQS)
    assert zone.kind is DnsblKind.SPAMHAUS_ZEN
    pbl, error = query_dnsbl([pbl_ip, error_ip], [zone], resolver, TIMEOUT)

    listed = interpret_dnsbl(pbl)
    assert (listed.status, listed.outcome) == (Status.FAIL, Outcome.DNSBL)
    assert "127.0.0.11 PBL Spamhaus-maintained" in listed.summary
    assert "dynamic/end-user address space" in listed.summary
    static = interpret_static_ip(pbl_ip, [pbl])
    assert (static.status, static.outcome) == (Status.FAIL, None)

    failed = interpret_dnsbl(error)
    assert (failed.status, failed.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert f"answered 127.255.255.254 for {error_ip}: an error code" in failed.summary
    assert "not a listing" in failed.summary
    assert interpret_static_ip(error_ip, [error]).status is not Status.OK


def test_a_mirror_under_any_name_is_read_by_the_kind_it_is_given(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ip, mirror = "203.0.113.28", f"zen.mirror.{HOSTS}"
    records.a(query_name(ip, mirror), "127.0.0.10")
    (as_named,) = query_dnsbl([ip], named(mirror), resolver, TIMEOUT)
    (as_zen,) = query_dnsbl([ip], [DnsblZone(mirror, DnsblKind.SPAMHAUS_ZEN)], resolver, TIMEOUT)
    # By its name alone it is some list that lists the IP; as ZEN, 127.0.0.10 is the PBL.
    assert "Policy Block List" not in interpret_dnsbl(as_named).summary
    assert interpret_static_ip(ip, [as_named]).status is not Status.FAIL
    assert "Policy Block List" in interpret_dnsbl(as_zen).summary
    assert interpret_static_ip(ip, [as_zen]).status is Status.FAIL


def test_refused_query_is_an_error_with_the_resolver_hint(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ip = "203.0.113.18"
    records.rcode(query_name(ip, ZONE), "REFUSED")
    (answer,) = query_dnsbl([ip], named(ZONE), resolver, TIMEOUT)
    assert answer.addresses is None and answer.error == "REFUSED"
    finding = interpret_dnsbl(answer)
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "public resolvers" in finding.fix


def test_servfail_is_an_error(records: ScratchRecords, resolver: dns.resolver.Resolver) -> None:
    ip = "203.0.113.19"
    records.rcode(query_name(ip, ZONE), "SERVFAIL")
    finding = dnsbl_finding(ip, ZONE, resolver)
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "SERVFAIL" in finding.summary


def test_dnsbl_resolver_asks_the_dnsbl_nameservers(
    records: ScratchRecords, dns_server: DnsServer
) -> None:
    ip = "203.0.113.20"
    records.a(query_name(ip, ZONE), "127.0.0.2")
    config = DnsConfig(
        nameservers=(Nameserver("127.0.0.1", 9),),  # nothing listens there
        dnsbl_nameservers=(Nameserver(*dns_server.address),),
        timeout_s=TIMEOUT,
    )
    finding = dnsbl_finding(ip, ZONE, build_dnsbl_resolver(config))
    assert (finding.status, finding.outcome) == (Status.FAIL, Outcome.DNSBL)


# --- a server that never answers: bounded, never a hang ---


def test_dropped_ptr_query_is_a_dns_error_within_the_timeout(
    records: ScratchRecords, resolver: dns.resolver.Resolver, dns_server: DnsServer
) -> None:
    ip = "203.0.113.21"
    records.drop(reverse_name(ip))
    started = time.monotonic()
    found = ptr_findings(ip, f"mail21.{HOSTS}", resolver)
    elapsed = time.monotonic() - started
    assert (found["ptr"].status, found["ptr"].outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "timeout" in found["ptr"].summary
    assert elapsed < TIMEOUT + SLACK
    assert dns_server.query_count(reverse_name(ip), "PTR") >= 1


def test_dropped_forward_query_is_a_dns_error_within_two_timeouts(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ip, name = "203.0.113.22", f"mail22.{HOSTS}"
    records.ptr(ip, name)
    records.drop(name)
    started = time.monotonic()
    found = ptr_findings(ip, name, resolver)
    elapsed = time.monotonic() - started
    assert (found["ptr"].status, found["ptr"].outcome) == (Status.WARN, Outcome.DNS_ERROR)
    # The HELO name is the PTR name, but whether it resolves to the IP is not known.
    assert (found["helo"].status, found["helo"].outcome) == (Status.WARN, None)
    assert "its lookup failed" in found["helo"].summary
    assert elapsed < 2 * TIMEOUT + SLACK


def test_dropped_dnsbl_queries_time_out_in_parallel(
    records: ScratchRecords, resolver: dns.resolver.Resolver
) -> None:
    ips = ["203.0.113.23", "203.0.113.24"]
    zones = [ZONE, f"bl2.{HOSTS}", f"bl3.{HOSTS}"]
    for ip in ips:
        for zone in zones:
            records.drop(query_name(ip, zone))
    started = time.monotonic()
    answers = query_dnsbl(ips, named(*zones), resolver, TIMEOUT)
    elapsed = time.monotonic() - started
    assert len(answers) == 6
    for answer in answers:
        assert answer.addresses is None and "timeout" in answer.error
        finding = interpret_dnsbl(answer)
        assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert elapsed < TIMEOUT + SLACK  # six lookups, one timeout: they ran side by side
