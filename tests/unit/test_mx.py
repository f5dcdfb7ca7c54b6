"""MX of a From domain (advisory): every branch of interpret_mx, and query_mx through a resolver."""

from __future__ import annotations

import dns.exception
import dns.resolver
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reputable.checks.findings import Outcome, Status
from reputable.checks.mx import MxAnswers, interpret_mx, query_mx
from tests.unit.test_spf import FakeResolver

IP = "203.0.113.5"
IP6 = "2001:db8::25"
MX = "mail.example.com"


def answers(
    hosts: tuple[tuple[int, str], ...] | None = ((10, MX),),
    addresses: dict[str, tuple[str, ...]] | None = None,
    error: str = "",
) -> MxAnswers:
    if addresses is None:
        addresses = {MX: (IP, IP6)}
    return MxAnswers("example.com", hosts, addresses, error, 1200)


def test_mx_pointing_at_a_sending_ip_is_ok() -> None:
    found = interpret_mx(answers(), [IP])
    assert (found.id, found.status, found.outcome, found.ttl_s) == (
        "mx.example.com",
        Status.OK,
        None,
        1200,
    )
    assert found.summary == f"the MX of example.com points at this host: {MX} ({IP})"


def test_ipv6_addresses_compare_as_addresses_not_text() -> None:
    assert interpret_mx(answers(), ["2001:0db8:0:0::25"]).status is Status.OK


def test_mx_elsewhere_is_an_advisory_warning() -> None:
    found = interpret_mx(answers(), ["198.51.100.7", "not an ip"])
    assert (found.status, found.outcome) == (Status.WARN, None)
    assert f"no MX host of example.com ({MX}) resolves to a sending IP (198.51.100.7)" in (
        found.summary
    )
    assert "received elsewhere" in found.fix


def test_no_sending_ips_known_warns() -> None:
    found = interpret_mx(answers(), [])
    assert found.status is Status.WARN and "(none known)" in found.summary


def test_no_mx_warns() -> None:
    found = interpret_mx(answers(hosts=None, addresses={}), [IP])
    assert (found.status, found.outcome) == (Status.WARN, None)
    assert "has no MX record" in found.summary and "RFC 5321 §5.1" in found.summary


def test_null_mx_warns_that_it_accepts_no_mail() -> None:
    found = interpret_mx(answers(hosts=((0, "."),), addresses={}), [IP])
    assert (found.status, found.outcome) == (Status.WARN, None)
    assert "null MX (RFC 7505): it accepts no mail" in found.summary


def test_mx_lookup_failure_is_a_dns_error() -> None:
    found = interpret_mx(answers(hosts=None, addresses={}, error="MX example.com: timeout"), [IP])
    assert (found.status, found.outcome) == (Status.WARN, Outcome.DNS_ERROR)


def test_host_lookup_failure_is_a_dns_error_unless_another_host_matches() -> None:
    hosts = ((10, MX), (20, "backup.example.net"))
    partial: dict[str, tuple[str, ...]] = {MX: ()}
    failed = answers(hosts, partial, "A backup.example.net: no answer within 2 s")
    found = interpret_mx(failed, [IP])
    assert (found.status, found.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    matched = answers(hosts, {MX: (IP,)}, "A backup.example.net: no answer within 2 s")
    assert interpret_mx(matched, [IP]).status is Status.OK


hosts = st.one_of(
    st.none(),
    st.lists(
        st.tuples(st.integers(0, 65535), st.sampled_from([MX, ".", "", "x.example.net"])),
        max_size=3,
    ).map(tuple),
)
address_text = st.one_of(st.ip_addresses().map(str), st.text(max_size=12))


@given(
    hosts,
    st.dictionaries(
        st.text(max_size=10), st.lists(address_text, max_size=3).map(tuple), max_size=3
    ),
    st.sampled_from(["", "timeout"]),
    st.lists(address_text, max_size=3),
)
def test_interpret_mx_never_raises_and_never_fails(
    mx_hosts: tuple[tuple[int, str], ...] | None,
    addresses: dict[str, tuple[str, ...]],
    error: str,
    sending_ips: list[str],
) -> None:
    found = interpret_mx(MxAnswers("example.com", mx_hosts, addresses, error), sending_ips)
    assert found.id == "mx.example.com"
    assert found.status is not Status.FAIL  # advisory: never gates mail
    assert found.outcome in (None, Outcome.DNS_ERROR)


# --- query_mx (no sockets) ---


def test_query_mx_sorts_hosts_and_collects_their_addresses() -> None:
    zone = {
        ("example.com", "MX"): ["20 backup.example.net.", f"10 {MX}."],
        (MX, "A"): [IP],
        (MX, "AAAA"): [IP6],
        ("backup.example.net", "AAAA"): ["2001:db8::26"],
    }
    resolver = FakeResolver(zone, ttl=900)
    assert query_mx("Example.COM.", resolver, 2.0) == MxAnswers(
        "example.com",
        ((10, MX), (20, "backup.example.net")),
        {MX: (IP, IP6), "backup.example.net": ("2001:db8::26",)},
        "",
        900,
    )


def test_query_mx_null_mx_looks_up_no_address() -> None:
    resolver = FakeResolver({("example.com", "MX"): ["0 ."]})
    assert query_mx("example.com", resolver, 2.0) == MxAnswers(
        "example.com", ((0, "."),), {}, "", 3600
    )
    assert resolver.asked == [("example.com", "MX")]


@pytest.mark.parametrize("zone", [{}, {("example.com", "A"): [IP]}])
def test_query_mx_without_mx_records(zone: dict[tuple[str, str], list[str]]) -> None:
    assert query_mx("example.com", FakeResolver(zone), 2.0) == MxAnswers("example.com", None, {})


def test_query_mx_host_without_address_and_failures() -> None:
    zone = {("example.com", "MX"): ["10 gone.example.net.", "20 slow.example.net."]}
    resolver = FakeResolver(zone, fail={"slow.example.net": dns.exception.Timeout})
    found = query_mx("example.com", resolver, 2.0)
    assert found.addresses == {"gone.example.net": (), "slow.example.net": ()}
    assert found.error == (
        "A slow.example.net: timeout: no answer within 2 s; "
        "AAAA slow.example.net: timeout: no answer within 2 s"
    )
    assert found.ttl_s == 60
    failing = FakeResolver({}, fail={"example.com": dns.resolver.NoNameservers})
    assert query_mx("example.com", failing, 2.0).hosts is None
    assert query_mx("example.com", failing, 2.0).error.startswith("MX example.com: ")
