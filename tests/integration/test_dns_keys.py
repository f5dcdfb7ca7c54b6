"""Key records published by RFC 2136 into a real knotd, then checked the way `keys activate` does.

knotd is authoritative for ZONE on port 53 of a 127.54.x.y address and takes
updates signed with the TSIG key the harness made. The session's in-process
DNS server stands in for the recursive resolver: it serves ZONE's SOA, NS and
glue pointing at knotd, so that the authoritative servers are found through
a real delegation.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.query
import dns.resolver
import pytest

from reputable.config import DnsConfig, Nameserver
from reputable.keys.dnscheck import DnsStatus, authoritative_servers, check_key_record
from reputable.keys.publish import PublishError, TsigKey, load_tsig_key, publish_txt, remove_txt
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import generate_private_key
from reputable.resolver import build_resolver
from reputable.signing.algorithm import Algorithm
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.knot import KnotServer

pytestmark = pytest.mark.integration

ZONE = "keys.example.test"
DOMAIN = "dns-keys.example.net"  # names this module sets in the shared server
SCRATCH = "." + DOMAIN
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotServer]:
    with KnotServer(ZONE) as server:
        yield server


@pytest.fixture(scope="module")
def tsig(knot: KnotServer) -> TsigKey:
    """The key as reputable reads it: from the 0600 BIND-format file the harness wrote."""
    key = load_tsig_key(knot.key_file)
    assert key == knot.key
    return key


@pytest.fixture
def delegation(dns_server: DnsServer, knot: KnotServer) -> Iterator[dns.resolver.Resolver]:
    """A resolver whose world holds ZONE's SOA, NS and glue, all pointing at knotd."""
    dns_server.set_records(ZONE, "SOA", [knot.soa_text])
    dns_server.set_records(ZONE, "NS", [f"{knot.ns_name}."])
    dns_server.set_a(knot.ns_name, knot.host)
    yield resolver_for(dns_server)
    for name in (ZONE, knot.ns_name):
        dns_server.remove(name)


@pytest.fixture
def shared_dns(dns_server: DnsServer) -> Iterator[DnsServer]:
    """The session's server, left as found: the drops, rcodes and records set here are undone."""
    before = set(dns_server.queries)
    yield dns_server
    for name in {q.qname for q in dns_server.queries if q not in before}:
        if name.endswith(SCRATCH):
            dns_server.set_drop(name, False)
            dns_server.set_rcode(name, None)
            dns_server.remove(name)


def resolver_for(server: DnsServer) -> dns.resolver.Resolver:
    return build_resolver(DnsConfig(nameservers=(Nameserver(*server.address),), timeout_s=TIMEOUT))


def rsa_record() -> str:
    return record_value(Algorithm.RSA_SHA256, generate_private_key(Algorithm.RSA_SHA256, 2048))


def no_recursion() -> dns.resolver.Resolver:
    """A resolver for checks that must not need one (verify_nameservers given)."""
    return build_resolver(DnsConfig(nameservers=(Nameserver("127.0.0.1", 9),), timeout_s=0.5))


def test_published_rsa_record_is_served_as_given_and_matches(
    knot: KnotServer, tsig: TsigKey
) -> None:
    value = rsa_record()
    strings = split_strings(value)
    assert len(strings) == 2
    name = record_name("s-match", ZONE)
    serial = knot.serial()

    zone = publish_txt(knot.nameserver, name, strings, 300, tsig)  # zone found by asking knotd

    assert zone == ZONE
    assert knot.txt_strings(name) == [tuple(s.encode() for s in strings)]
    assert knot.serial() > serial  # knotd kept the journal and bumped the serial itself
    check = check_key_record("s-match", ZONE, value, no_recursion(), [knot.nameserver], TIMEOUT)
    assert check.status is DnsStatus.MATCHING, check.detail
    assert check.servers == (str(knot.nameserver),)
    assert check.testing is False


def test_publishing_another_key_replaces_the_record_and_mismatches(
    knot: KnotServer, tsig: TsigKey
) -> None:
    ours, theirs = rsa_record(), rsa_record()
    name = record_name("s-other", ZONE)
    publish_txt(knot.nameserver, name, split_strings(ours), 300, tsig, zone=ZONE)
    publish_txt(knot.nameserver, name, split_strings(theirs), 300, tsig, zone=ZONE)

    assert knot.txt_strings(name) == [tuple(s.encode() for s in split_strings(theirs))]
    check = check_key_record("s-other", ZONE, ours, no_recursion(), [knot.nameserver], TIMEOUT)
    assert check.status is DnsStatus.MISMATCH
    p = theirs.split("p=", 1)[1]
    assert check.detail == f"{knot.nameserver} has p={p[:4]}…{p[-4:]} (another key)"


def test_a_record_truncated_by_a_registrar_is_named(knot: KnotServer, tsig: TsigKey) -> None:
    value = rsa_record()
    name = record_name("s-cut", ZONE)
    publish_txt(knot.nameserver, name, [value[:255]], 300, tsig, zone=ZONE)
    check = check_key_record("s-cut", ZONE, value, no_recursion(), [knot.nameserver], TIMEOUT)
    assert check.status is DnsStatus.MISMATCH
    assert "truncated" in check.detail


def test_removed_record_is_missing(knot: KnotServer, tsig: TsigKey) -> None:
    value = rsa_record()
    name = record_name("s-gone", ZONE)
    publish_txt(knot.nameserver, name, split_strings(value), 300, tsig, zone=ZONE)

    assert remove_txt(knot.nameserver, name, tsig) == ZONE
    assert remove_txt(knot.nameserver, name, tsig, zone=ZONE) == ZONE  # nothing left: fine

    assert knot.txt_strings(name) == []
    check = check_key_record("s-gone", ZONE, value, no_recursion(), [knot.nameserver], TIMEOUT)
    assert check.status is DnsStatus.MISSING
    assert check.detail == f"{knot.nameserver} has no DKIM key record"


def test_wrong_tsig_secret_is_refused_naming_the_key(knot: KnotServer, tsig: TsigKey) -> None:
    name = record_name("s-badkey", ZONE)
    wrong = dataclasses.replace(tsig, secret=bytes(32))
    with pytest.raises(PublishError) as caught:
        publish_txt(knot.nameserver, name, ["v=DKIM1; p="], 300, wrong, zone=ZONE)
    message = str(caught.value)
    assert f"TSIG key {tsig.name}" in message
    assert "BADSIG" in message
    assert "secret" in message
    assert knot.txt_strings(name) == []


def test_unknown_tsig_key_name_is_refused(knot: KnotServer, tsig: TsigKey) -> None:
    stranger = dataclasses.replace(tsig, name="stranger.example.test")
    with pytest.raises(PublishError, match=r"stranger\.example\.test .*BADKEY"):
        remove_txt(knot.nameserver, record_name("s-stranger", ZONE), stranger, zone=ZONE)


def test_update_for_a_zone_knot_does_not_serve(knot: KnotServer, tsig: TsigKey) -> None:
    with pytest.raises(PublishError, match=r"serves no zone holding s1\._domainkey\.example\.org"):
        remove_txt(knot.nameserver, "s1._domainkey.example.org", tsig)
    with pytest.raises(PublishError, match="NOTAUTH"):
        remove_txt(knot.nameserver, "s1._domainkey.example.org", tsig, zone="example.org")


def test_authoritative_servers_found_through_a_delegation(
    knot: KnotServer, tsig: TsigKey, delegation: dns.resolver.Resolver
) -> None:
    value = rsa_record()
    name = record_name("s-deleg", ZONE)
    assert authoritative_servers(name, delegation) == [knot.nameserver]

    assert publish_txt(knot.nameserver, name, split_strings(value), 300, tsig, resolver=delegation)

    check = check_key_record("s-deleg", ZONE, value, delegation, (), TIMEOUT)
    assert check.status is DnsStatus.MATCHING, check.detail
    assert check.servers == (f"{knot.ns_name} ({knot.nameserver})",)


def test_no_zone_found_is_an_error_not_an_exception(shared_dns: DnsServer) -> None:
    # The shared server has no SOA above this name: the walk up ends at the root.
    check = check_key_record("s-nozone", DOMAIN, rsa_record(), resolver_for(shared_dns), (), 1.0)
    assert check.status is DnsStatus.ERROR
    assert check.detail.startswith(f"cannot find the zone of s-nozone._domainkey.{DOMAIN}: ")


def test_a_dropping_server_is_an_error_within_the_timeout(shared_dns: DnsServer) -> None:
    name = record_name("s-drop", DOMAIN)
    shared_dns.set_drop(name)
    server = Nameserver(*shared_dns.address)
    start = time.monotonic()
    check = check_key_record("s-drop", DOMAIN, rsa_record(), no_recursion(), [server], 1.0)
    elapsed = time.monotonic() - start
    assert check.status is DnsStatus.ERROR
    assert check.detail == f"{server} failed: no answer within 1 s"
    assert elapsed < 3.0


def test_one_dropping_server_of_two_spoils_the_match(
    knot: KnotServer, tsig: TsigKey, shared_dns: DnsServer
) -> None:
    value = rsa_record()
    name = record_name("s-half", ZONE)
    publish_txt(knot.nameserver, name, split_strings(value), 300, tsig, zone=ZONE)
    shared_dns.set_drop(name)
    dropper = Nameserver(*shared_dns.address)
    servers = [knot.nameserver, dropper]
    start = time.monotonic()
    check = check_key_record("s-half", ZONE, value, no_recursion(), servers, 1.0)
    assert time.monotonic() - start < 3.0  # asked at once, not one after the other
    assert check.status is DnsStatus.ERROR
    assert check.detail == (
        f"{dropper} failed: no answer within 1 s ({knot.nameserver} has our key)"
    )


def test_servfail_and_refused_are_errors_with_the_reason(shared_dns: DnsServer) -> None:
    server = Nameserver(*shared_dns.address)
    shared_dns.set_rcode(record_name("s-fail", DOMAIN), "SERVFAIL")
    check = check_key_record("s-fail", DOMAIN, rsa_record(), no_recursion(), [server], 1.0)
    assert check.status is DnsStatus.ERROR
    assert "answered SERVFAIL" in check.detail
    shared_dns.set_rcode(record_name("s-refused", DOMAIN), "REFUSED")
    check = check_key_record("s-refused", DOMAIN, rsa_record(), no_recursion(), [server], 1)
    assert "answered REFUSED: it does not serve this zone" in check.detail


def test_a_large_answer_is_fetched_over_tcp(
    knot: KnotServer, tsig: TsigKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A p= of 2000 characters (no real key is that long below RSA-8192): the answer
    # exceeds the 1232 bytes we ask for over UDP, so knotd sets TC and TCP follows.
    value = "v=DKIM1; k=rsa; p=" + base64.b64encode(bytes(range(256)) * 6)[:2000].decode()
    name = record_name("s-big", ZONE)
    publish_txt(knot.nameserver, name, split_strings(value), 300, tsig, zone=ZONE)
    over_tcp: list[str] = []
    real_tcp = dns.query.tcp

    def spy(query: dns.message.Message, where: str, **kwargs: Any) -> dns.message.Message:
        over_tcp.append(where)
        return real_tcp(query, where, **kwargs)

    monkeypatch.setattr(dns.query, "tcp", spy)
    check = check_key_record("s-big", ZONE, value, no_recursion(), [knot.nameserver], TIMEOUT)
    assert check.status is DnsStatus.MATCHING, check.detail
    assert over_tcp == [knot.host]


def test_a_cname_to_the_key_is_followed(shared_dns: DnsServer) -> None:
    value = rsa_record()
    name = record_name("s-alias", DOMAIN)
    target = f"s-alias{SCRATCH}"  # never asked for by name: removed here, not by the fixture
    shared_dns.set_cname(name, target)
    shared_dns.set_txt(target, *split_strings(value))
    server = Nameserver(*shared_dns.address)
    try:
        check = check_key_record("s-alias", DOMAIN, value, no_recursion(), [server], TIMEOUT)
    finally:
        shared_dns.remove(target)
    assert check.status is DnsStatus.MATCHING, check.detail


def test_publishing_to_a_silent_server_gives_up_in_time(
    shared_dns: DnsServer, tsig: TsigKey
) -> None:
    name = record_name("s-silent", DOMAIN)
    shared_dns.set_drop(name)
    start = time.monotonic()
    with pytest.raises(PublishError, match=r"did not answer within 0\.5 s"):
        publish_txt(
            Nameserver(*shared_dns.address), name, ["v=DKIM1; p="], 300, tsig, timeout_s=0.5
        )
    assert time.monotonic() - start < 2.5
