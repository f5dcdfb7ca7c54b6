"""The bounded lookup every check shares: its deadline and its few words of failure."""

from __future__ import annotations

import time

import dns.exception
import dns.resolver
import pytest

from reputable.resolver import NoTimeLeft, failure_reason, resolve_by


def test_a_lookup_past_its_deadline_sends_nothing() -> None:
    class NeverAsked(dns.resolver.Resolver):
        def resolve(self, *args: object, **kwargs: object) -> dns.resolver.Answer:
            raise AssertionError("a query was sent after the deadline")

    with pytest.raises(NoTimeLeft):
        resolve_by(NeverAsked(configure=False), "example.com", "TXT", time.monotonic() - 0.001)


def test_failure_reasons() -> None:
    timeout = dns.exception.Timeout()  # type: ignore[no-untyped-call]
    assert failure_reason(timeout, 1.5) == "no answer within 1.5 s"
    assert failure_reason(NoTimeLeft(), 2.0) == "no answer within 2 s"
    refused = dns.resolver.NoNameservers()  # type: ignore[no-untyped-call]
    assert failure_reason(refused, 2.0).startswith("All nameservers failed")
    silent = dns.exception.DNSException("")  # type: ignore[no-untyped-call]
    assert failure_reason(silent, 2.0) == "DNSException"
