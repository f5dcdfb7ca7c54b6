"""What a reputation check found, as data: status, one-line summary and fix, and the action it maps to. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"  # could not be checked (the summary says why): neither ok nor a fault


class Outcome(StrEnum):
    """The `[actions]` key a finding is judged by when it gates mail."""

    PTR = "ptr"
    DNSBL = "dnsbl"
    SPF_FAIL = "spf_fail"
    SPF_SOFTFAIL = "spf_softfail"
    DMARC_UNALIGNED = "dmarc_unaligned"
    DKIM_RECORD = "dkim_record"
    DNS_ERROR = "dns_error"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the checklist.

    `id` is prefixed by the check (ptr, helo, static_ip, port25, dnsbl, spf,
    dkim, dmarc, mx, postfix), e.g. "dnsbl.zen.spamhaus.org.203.0.113.5". `outcome` is
    set when the finding should gate outbound mail (FAIL, or a DNS error
    with Outcome.DNS_ERROR); None for advisory lines. `ttl_s` is how long
    the finding may be trusted (the smallest TTL of the answers used).
    """

    id: str
    status: Status
    summary: str
    fix: str = ""
    outcome: Outcome | None = None
    ttl_s: int = 300


def worst(findings: Iterable[Finding]) -> Status:
    """FAIL, else WARN, else OK: a row that could not be checked (UNKNOWN) counts for nothing."""
    statuses = {f.status for f in findings}
    if Status.FAIL in statuses:
        return Status.FAIL
    return Status.WARN if Status.WARN in statuses else Status.OK
