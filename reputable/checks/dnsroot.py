"""Whether a resolver can see the internet's DNS (the root test), and the rows that need it. Pure but `query_root`.

A resolver that answers NXDOMAIN for everything (a captive portal, a lab
resolver without root hints) or nothing at all (offline) makes every other
answer meaningless: "no PTR" and "not listed" may only be what it cannot
see. So the root's NS is asked first; while that fails, each row that
depends on that resolver is `unknown` in `check`, and gates mail as
`dns_error` in the milter. The DNSBL resolver (`[dns] dnsbl_nameservers`)
may be another one: each row depends on the resolver it asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from reputable.checks.findings import Finding, Outcome, Status
from reputable.config import Config
from reputable.resolver import failure_reason, nameserver_addresses

DNS_ROW = "dns"  # the row of the record resolver ([dns] nameservers, else resolv.conf)
DNSBL_ROW = "dns.dnsbl"  # the row of a separate DNSBL resolver ([dns] dnsbl_nameservers)
# While a resolver cannot be trusted, nothing it said may be kept: ask again at the
# next refresh (`[checks] refresh`), not when some TTL runs out.
UNTRUSTED_TTL_S = 0

# The row families each resolver's answers make; "dkim" too when the key
# records are found through the resolver (no [keys] verify_nameservers).
_RECORD_FAMILIES = frozenset({"ptr", "ptr_generic", "helo", "spf", "dmarc", "mx"})
_DNSBL_FAMILIES = frozenset({"dnsbl", "static_ip"})
# Families whose findings gate mail: while unknown, they take [actions] dns_error.
_GATING = frozenset({"ptr", "dnsbl", "dkim", "spf", "dmarc"})


@dataclass(frozen=True, slots=True)
class RootAnswer:
    """What one resolver said when asked for the DNS root's NS records."""

    servers: str  # who was asked, e.g. "127.0.0.1:53 ([dns] nameservers)"
    error: str = ""  # why the lookup failed, in our words; "": it answered
    timed_out: bool = False  # no answer at all (offline, or the servers are unreachable)
    root_denied: bool = False  # NXDOMAIN for the root: it cannot see the internet's DNS
    has_ns: bool = True  # the answer named the root's servers

    @property
    def trusted(self) -> bool:
        return not self.error


@dataclass(frozen=True, slots=True)
class DnsTrust:
    """Why each resolver cannot be trusted ("": it can), for the rows that depend on it."""

    records: str = ""  # the record resolver: PTR, HELO, SPF, DMARC, MX (and DKIM, see below)
    dnsbl: str = ""  # the DNSBL resolver: blocklists and the static-IP row
    dnsbl_row: str = DNS_ROW  # the row that says why the DNSBL resolver is not trusted
    dkim_by_resolver: bool = True  # key records found through the record resolver

    @property
    def trusted(self) -> bool:
        return not (self.records or self.dnsbl)


# --- asking (I/O) ---


def query_root(resolver: dns.resolver.Resolver, timeout_s: float, setting: str) -> RootAnswer:
    """Ask `resolver` for the root's NS, bounded by `timeout_s`; never raises."""
    shown = ", ".join(f"{host}:{port}" for host, port in nameserver_addresses(resolver))
    servers = f"{shown} ({setting})" if shown else setting
    try:
        answer = resolver.resolve(
            dns.name.root, dns.rdatatype.NS, raise_on_no_answer=False, lifetime=timeout_s
        )
    except dns.resolver.NXDOMAIN as exc:
        return RootAnswer(servers, failure_reason(exc, timeout_s), root_denied=True)
    except dns.exception.Timeout as exc:
        return RootAnswer(servers, failure_reason(exc, timeout_s), timed_out=True)
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        return RootAnswer(servers, failure_reason(exc, timeout_s))
    return RootAnswer(servers, has_ns=answer.rrset is not None)


def probe_resolvers(
    config: Config, resolver: dns.resolver.Resolver, dnsbl_resolver: dns.resolver.Resolver
) -> tuple[list[Finding], DnsTrust]:
    """The dns row(s), and which rows they make unknown: one row per resolver in use."""
    timeout = config.dns.timeout_s
    setting = "[dns] nameservers" if config.dns.nameservers else "/etc/resolv.conf"
    records = query_root(resolver, timeout, setting)
    dnsbl = None
    if config.dns.dnsbl_nameservers:
        dnsbl = query_root(dnsbl_resolver, timeout, "[dns] dnsbl_nameservers")
    rows = [interpret_root(records, DNS_ROW)]
    if dnsbl is not None:
        rows.append(interpret_root(dnsbl, DNSBL_ROW))
    return rows, trust_of(records, dnsbl, dkim_by_resolver=not config.keys.verify_nameservers)


# --- interpreting (pure) ---


def interpret_root(answer: RootAnswer, fid: str = DNS_ROW) -> Finding:
    """The dns row: ok, a warning when the root has no NS, or FAIL (gating as dns_error)."""
    if fid == DNSBL_ROW:
        where = "[dns] dnsbl_nameservers (a local one, e.g. unbound on 127.0.0.1)"
    else:
        where = "/etc/resolv.conf or [dns] nameservers"
    fix = f"use a working recursive resolver in {where}"
    unknown = "every row that needs it is unknown"
    if answer.timed_out:
        summary = (
            f"DNS does not answer: {answer.servers} gave no answer for the DNS root "
            f"({answer.error}); offline, or the servers are unreachable: {unknown}"
        )
        fix = f"check the network, and {where}"
    elif answer.root_denied:
        summary = (
            f"the resolver {answer.servers} says the DNS root does not exist (NXDOMAIN): "
            f"it cannot see the internet's DNS, so {unknown}"
        )
    elif answer.error:
        summary = (
            f"the resolver {answer.servers} does not answer for the DNS root ({answer.error}): "
            f"its other answers cannot be trusted, so {unknown}"
        )
    elif not answer.has_ns:
        summary = (
            f"the resolver {answer.servers} answers for the DNS root but names no root "
            "servers: it may not see the internet's DNS"
        )
        return Finding(fid, Status.WARN, summary, fix)
    else:
        return Finding(fid, Status.OK, f"DNS answers: {answer.servers} sees the DNS root")
    return Finding(fid, Status.FAIL, summary, fix, Outcome.DNS_ERROR, UNTRUSTED_TTL_S)


def trust_of(
    records: RootAnswer, dnsbl: RootAnswer | None, *, dkim_by_resolver: bool = True
) -> DnsTrust:
    """What the root test of each resolver means for the rows (dnsbl None: the same resolver)."""
    if dnsbl is None:
        return DnsTrust(records.error, records.error, DNS_ROW, dkim_by_resolver)
    return DnsTrust(records.error, dnsbl.error, DNSBL_ROW, dkim_by_resolver)


def _distrusted(finding: Finding, trust: DnsTrust) -> tuple[str, str] | None:
    """(why, the dns row saying it) when `finding` rests on a resolver that cannot be trusted."""
    family = finding.id.split(".", 1)[0]
    if family in _DNSBL_FAMILIES:
        return (trust.dnsbl, trust.dnsbl_row) if trust.dnsbl else None
    record_family = family in _RECORD_FAMILIES or (family == "dkim" and trust.dkim_by_resolver)
    return (trust.records, DNS_ROW) if record_family and trust.records else None


def mark_untrusted(findings: Sequence[Finding], trust: DnsTrust) -> list[Finding]:
    """Each row that rests on an untrusted resolver becomes unknown (gating as dns_error).

    What such a resolver said is not knowledge ("no PTR", "not listed"), so
    the row's own verdict is dropped; the dns row says why and what to do.
    """
    if trust.trusted:
        return list(findings)
    marked: list[Finding] = []
    for finding in findings:
        distrusted = _distrusted(finding, trust)
        if distrusted is None:
            marked.append(finding)
            continue
        why, row = distrusted
        family = finding.id.split(".", 1)[0]
        marked.append(
            Finding(
                finding.id,
                Status.UNKNOWN,
                f"could not check: DNS cannot be trusted ({why}); see the {row} row",
                "",
                Outcome.DNS_ERROR if family in _GATING else None,
                UNTRUSTED_TTL_S,
            )
        )
    return marked
