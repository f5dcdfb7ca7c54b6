"""The bounded lookup every check shares: its deadline and its few words of failure."""

from __future__ import annotations

import time

import dns.exception
import dns.message
import dns.name
import dns.resolver
import dns.tsig
import pytest

from reputable.resolver import NoTimeLeft, failure_reason, resolve_by


def test_a_lookup_past_its_deadline_sends_nothing() -> None:
    class NeverAsked(dns.resolver.Resolver):
        def resolve(self, *args: object, **kwargs: object) -> dns.resolver.Answer:
            raise AssertionError("a query was sent after the deadline")

    with pytest.raises(NoTimeLeft):
        resolve_by(NeverAsked(configure=False), "example.com", "TXT", time.monotonic() - 0.001)


def _no_nameservers(*errors: object) -> dns.resolver.NoNameservers:
    request = dns.message.make_query("example.com", "A")
    entries = [(f"192.0.2.{n}", False, 53, error, None) for n, error in enumerate(errors, 1)]
    return dns.resolver.NoNameservers(request=request, errors=entries)  # type: ignore[no-untyped-call]


def _nxdomain(name: str) -> dns.resolver.NXDOMAIN:
    return dns.resolver.NXDOMAIN(qnames=[dns.name.from_text(name)], responses={})  # type: ignore[no-untyped-call]


TIMEOUT = dns.exception.Timeout()  # type: ignore[no-untyped-call]
REFUSED_TCP = ConnectionRefusedError(111, "Connection refused")


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TIMEOUT, "timeout: no answer within 1.5 s"),
        (dns.resolver.LifetimeTimeout(timeout=1.6, errors=[]), "timeout: no answer within 1.5 s"),  # type: ignore[no-untyped-call]
        (NoTimeLeft(), "timeout: no answer within 1.5 s"),
        (_no_nameservers("SERVFAIL"), "SERVFAIL"),
        (_no_nameservers("REFUSED", "REFUSED"), "REFUSED"),
        (
            _no_nameservers("SERVFAIL", TIMEOUT, REFUSED_TCP),
            "SERVFAIL, timeout: no answer within 1.5 s, server unreachable (Connection refused)",
        ),
        (_no_nameservers(), "no name server answered"),
        (_nxdomain("."), "resolver denies the root: NXDOMAIN for the DNS root"),
        (_nxdomain("example.com"), "NXDOMAIN (no such name)"),
        (dns.resolver.NoRootSOA(), "resolver denies the root: no SOA at the DNS root"),  # type: ignore[no-untyped-call]
        (dns.resolver.NoResolverConfiguration(), "no name servers configured"),  # type: ignore[no-untyped-call]
        (dns.resolver.YXDOMAIN(), "YXDOMAIN"),  # type: ignore[no-untyped-call]
        (dns.name.LabelTooLong(), "not a valid DNS name"),  # type: ignore[no-untyped-call]
        (dns.name.EmptyLabel(), "not a valid DNS name"),  # type: ignore[no-untyped-call]
        (dns.message.Truncated(), "truncated answer"),  # type: ignore[no-untyped-call]
        (dns.message.ShortHeader(), "malformed answer"),  # type: ignore[no-untyped-call]
        (dns.tsig.BadSignature(), "the answer's TSIG signature does not verify"),  # type: ignore[no-untyped-call]
        (REFUSED_TCP, "server unreachable (Connection refused)"),
        (dns.exception.DNSException(), "unexpected DNS failure (DNSException)"),  # type: ignore[no-untyped-call]
    ],
)
def test_every_resolver_failure_has_a_short_reason_of_ours(exc: Exception, reason: str) -> None:
    assert failure_reason(exc, 1.5) == reason


@pytest.mark.parametrize("server", ["127.0.0.1", "Do53:127.0.0.1@53"])  # dnspython 2.3, later
def test_dnspython_words_never_come_through(server: str) -> None:
    # The messages users saw: whatever dnspython says, our words come out.
    leaked = [
        "There is no SOA RR at the DNS root name",
        "The DNS query name does not exist",
        "All nameservers failed to answer the query",
        "The resolution lifetime expired",
        "answered",
    ]
    failures: list[Exception] = [
        dns.resolver.NoRootSOA(),  # type: ignore[no-untyped-call]
        _nxdomain("."),
        _nxdomain("mail.example.com"),
        dns.resolver.NoNameservers(  # type: ignore[no-untyped-call]
            request=dns.message.make_query("example.com", "A"),
            errors=[(server, False, 53, "SERVFAIL", None)],
        ),
        dns.resolver.LifetimeTimeout(timeout=2.0, errors=[(server, False, 53, TIMEOUT, None)]),  # type: ignore[no-untyped-call]
    ]
    for exc in failures:
        reason = failure_reason(exc)
        assert reason and not any(words in reason for words in leaked), reason
        assert str(exc) not in reason
