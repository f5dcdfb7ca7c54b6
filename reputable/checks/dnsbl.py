"""DNS blocklists (RFC 5782) and the Spamhaus PBL static-IP test. Pure but for `query_dnsbl`.

A list answers an A record in 127.0.0.0/8 for what it lists and NXDOMAIN
for the rest. Not every answer is a listing: Spamhaus answers 127.255.255.x
for errors (a public resolver, too many queries, a misspelled zone), and
resolvers that rewrite NXDOMAIN answer with other addresses. Those are DNS
errors here, never "listed" (DESIGN.md, "DNS answers mean what the lists say").
Each answer is read by the table of its list's kind (checks/blocklists.py).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address

import dns.resolver

from reputable.checks.blocklists import (
    DBL_IP_QUERY,
    ERROR_MEANINGS,
    DnsblKind,
    DnsblZone,
    is_error_code,
    is_pbl_code,
    kind_of_zone,
    meaning_of,
    shown_zone,
)
from reputable.checks.findings import Finding, Outcome, Status
from reputable.checks.ptr import DEFAULT_TTL_S, lookup

_LOOPBACK = IPv4Network("127.0.0.0/8")
_NEVER_A_CODE = IPv4Address("127.0.0.1")

_LOCAL_RESOLVER = (
    "Set [dns] dnsbl_nameservers to a local recursive resolver (e.g. unbound on "
    "127.0.0.1), not 8.8.8.8/1.1.1.1 or a provider's shared resolver"
)
_TXT_SHOWN = 200  # characters of a TXT reason kept in a summary


@dataclass(frozen=True, slots=True)
class DnsblAnswer:
    """What one list said about one IP address or domain."""

    zone: str  # as shown: a DQS key hidden (shown_zone)
    target: str  # the IP (as text) or domain asked about
    addresses: tuple[str, ...] | None  # A records; (): NXDOMAIN, not listed; None: failed
    txt: tuple[str, ...] = ()  # TXT reason(s), when listed
    error: str = ""  # timeout, SERVFAIL, REFUSED (some lists refuse public resolvers), ...
    ttl_s: int = DEFAULT_TTL_S
    kind: DnsblKind | None = None  # the list's kind; None: what the zone's name says

    @property
    def list_kind(self) -> DnsblKind:
        return self.kind if self.kind is not None else kind_of_zone(self.zone)


# --- asking (I/O) ---


def _ip(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def query_name(target: str, zone: str) -> str:
    """The name to ask (no trailing dot): RFC 5782 §2.1 (IPv4), §2.4 (IPv6), §3 (domains)."""
    zone = zone.strip().rstrip(".").lower()
    address = _ip(target)
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # the IPv4 sender it is
    if address is None:
        return f"{target.strip().rstrip('.').lower()}.{zone}"
    # reverse_pointer: the octets (IPv4) or the 32 nibbles (IPv6) in reverse order.
    reversed_labels = address.reverse_pointer.rsplit(".", 2)[0]
    return f"{reversed_labels}.{zone}"


def _ask(
    target: str, zone: DnsblZone, resolver: dns.resolver.Resolver, timeout_s: float
) -> DnsblAnswer:
    deadline = time.monotonic() + timeout_s
    name = query_name(target, zone.zone)
    found = lookup(resolver, name, "A", timeout_s)
    if not found.records:
        return DnsblAnswer(
            shown_zone(zone.zone), target, found.records, (), found.error, found.ttl_s, zone.kind
        )
    # RFC 5782 §2.1: the TXT record says why; it is optional, so a failure is no error.
    remaining = deadline - time.monotonic()
    reasons = lookup(resolver, name, "TXT", remaining) if remaining > 0 else None
    txt = (reasons.records or ()) if reasons is not None else ()
    ttl = min(found.ttl_s, reasons.ttl_s) if reasons is not None and txt else found.ttl_s
    return DnsblAnswer(shown_zone(zone.zone), target, found.records, txt, "", ttl, zone.kind)


def query_dnsbl(
    targets: Sequence[str],
    zones: Sequence[DnsblZone],
    resolver: dns.resolver.Resolver,
    timeout_s: float,
) -> list[DnsblAnswer]:
    """Ask every zone about every target in parallel, each pair bounded by `timeout_s`.

    The answers come in the order target by target, zone by zone. TXT is
    asked only for a name that has an A record, within the same bound.
    """
    pairs = [(target, zone) for target in targets for zone in zones]
    if not pairs:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(pairs))) as pool:
        jobs = [pool.submit(_ask, target, zone, resolver, timeout_s) for target, zone in pairs]
        return [job.result() for job in jobs]


# --- interpreting (pure) ---


class _Kind(Enum):
    LISTED = "listed"
    PBL = "pbl"
    LIST_ERROR = "list error"  # the list's own error code
    NOT_A_CODE = "not a code"  # never a list's answer: a resolver made it up


def _in_domain(zone: str, domain: str) -> bool:
    return zone == domain or zone.endswith("." + domain)


def _kind(address: str, list_kind: DnsblKind) -> _Kind:
    code = _ip(address)
    if not isinstance(code, IPv4Address) or code not in _LOOPBACK or code == _NEVER_A_CODE:
        # RFC 5782 §2.1/§5: codes live in 127.0.0.0/8 and 127.0.0.1 is the test point that
        # is never listed; anything else is a resolver rewriting NXDOMAIN (ISP, Pi-hole).
        return _Kind.NOT_A_CODE
    if is_error_code(code, list_kind):
        return _Kind.LIST_ERROR
    if is_pbl_code(str(code), list_kind):
        return _Kind.PBL
    return _Kind.LISTED


def _kinds(answer: DnsblAnswer) -> dict[str, _Kind]:
    return {address: _kind(address, answer.list_kind) for address in answer.addresses or ()}


def _printable(text: str) -> str:
    shown = "".join(c if c.isprintable() else " " for c in text).strip()
    return shown if len(shown) <= _TXT_SHOWN else shown[: _TXT_SHOWN - 1] + "…"


def _subject(target: str) -> str:
    return f"sending IP {target}" if _ip(target) is not None else f"domain {target}"


def _removal(zone: str, target: str, kind: DnsblKind) -> str:
    zone = zone.rstrip(".").lower()
    if kind.spamhaus:
        return f"look {target} up at https://check.spamhaus.org/ and follow its removal steps"
    if kind is DnsblKind.SPAMCOP or _in_domain(zone, "spamcop.net"):
        return (
            "SpamCop delists by itself about 24 hours after the last report "
            "(https://www.spamcop.net/bl.shtml)"
        )
    if _in_domain(zone, "surriel.com") or _in_domain(zone, "psbl.org"):
        return f"remove {target} yourself at https://psbl.org/ (PSBL)"
    if _in_domain(zone, "barracudacentral.org"):
        return "ask at https://www.barracudacentral.org/rbl/removal-request"
    return (
        f"use the removal page of {zone} (its operator's web site; the TXT reason often links it)"
    )


def _codes_text(codes: Sequence[str], kind: DnsblKind, txt: Sequence[str]) -> str:
    shown = ", ".join(f"{code} {meaning_of(code, kind)}".rstrip() for code in codes)
    reasons = "; ".join(_printable(reason) for reason in txt if reason.strip())
    return f"{shown}: {reasons}" if reasons else shown


def _failed(answer: DnsblAnswer, fid: str) -> Finding:
    error = answer.error or "the lookup failed"
    fix = "Check that [dns] dnsbl_nameservers answer; the list is asked again at the next refresh"
    if "REFUSED" in error.upper():
        fix = (
            "Lists such as Spamhaus and Abusix refuse queries from public resolvers. "
            + _LOCAL_RESOLVER
        )
    return Finding(
        fid,
        Status.WARN,
        f"cannot tell whether {answer.target} is on {answer.zone}: {error}",
        fix,
        Outcome.DNS_ERROR,
        answer.ttl_s,
    )


def _not_an_answer(answer: DnsblAnswer, fid: str, kinds: dict[str, _Kind]) -> Finding:
    """A WARN for an answer that is an error code or no code at all: never a listing."""
    code = next(
        address
        for address, kind in kinds.items()
        if kind is not _Kind.LISTED and kind is not _Kind.PBL
    )
    head = f"{answer.zone} answered {code} for {answer.target}"
    if kinds[code] is _Kind.NOT_A_CODE:
        summary = (
            f"{head}, which is no DNSBL code (RFC 5782: codes are in 127.0.0.0/8, never "
            "127.0.0.1): the resolver rewrites NXDOMAIN; not a listing"
        )
        fix = (
            "Point [dns] dnsbl_nameservers at a recursive resolver that passes NXDOMAIN through "
            "unchanged (no ISP redirection, Pi-hole or filtering), e.g. unbound on 127.0.0.1"
        )
    elif code == "127.255.255.252":
        summary = f"{head}: an error code ({ERROR_MEANINGS[code]}), not a listing"
        fix = f"Fix the zone name {answer.zone} in [checks] dnsbl"
    elif code == "127.255.255.255":
        summary = f"{head}: an error code ({ERROR_MEANINGS[code]}), not a listing"
        fix = f"{_LOCAL_RESOLVER}, or register for a data feed (Spamhaus DQS)"
    elif code == "127.255.255.254":
        summary = f"{head}: an error code ({ERROR_MEANINGS[code]}), not a listing"
        fix = f"{_LOCAL_RESOLVER}; or register for a data feed (Spamhaus DQS)"
    elif code == DBL_IP_QUERY:
        summary = f"{head}: an error code (a domain list asked about an IP), not a listing"
        fix = f"Move {answer.zone} from [checks] dnsbl to [checks] dnsbl_domains"
    else:
        summary = f"{head}: an error code of the list, not a listing"
        fix = f"Look the code up in the documentation of {answer.zone}. {_LOCAL_RESOLVER}"
    return Finding(fid, Status.WARN, summary, fix, Outcome.DNS_ERROR, answer.ttl_s)


_STATIC_FIX = (
    "Get a static IP from your provider (with a PTR naming your mail host), or relay "
    "outbound mail through a smarthost (Postfix relayhost); if the IP really is static and "
    "yours, remove it from the PBL at https://check.spamhaus.org/"
)


def _listed(answer: DnsblAnswer, fid: str, kinds: dict[str, _Kind]) -> Finding:
    codes = list(kinds)
    detail = _codes_text(codes, answer.list_kind, answer.txt)
    subject = _subject(answer.target)
    pbl = any(kind is _Kind.PBL for kind in kinds.values())
    listed = any(kind is _Kind.LISTED for kind in kinds.values())
    if pbl and not listed:
        summary = (
            f"{subject} is in dynamic/end-user address space: it is on the Spamhaus Policy "
            f"Block List ({answer.zone}: {detail}); do not run a mail server without a static IP"
        )
        return Finding(fid, Status.FAIL, summary, _STATIC_FIX, Outcome.DNSBL, answer.ttl_s)
    summary = f"{subject} is listed on {answer.zone} ({detail})"
    fix = (
        "Find and stop what sent the spam (a compromised account, script or open relay) "
        f"first, then {_removal(answer.zone, answer.target, answer.list_kind)}"
    )
    if pbl:
        summary += "; it is also in dynamic/end-user space (the Policy Block List)"
        fix += ". For the PBL: " + _STATIC_FIX[0].lower() + _STATIC_FIX[1:]
    return Finding(fid, Status.FAIL, summary, fix, Outcome.DNSBL, answer.ttl_s)


def interpret_dnsbl(answer: DnsblAnswer) -> Finding:
    """The dnsbl.<zone>.<target> finding: not listed, listed (FAIL), or a DNS error (WARN)."""
    fid = f"dnsbl.{answer.zone}.{answer.target}"
    if answer.addresses is None:
        return _failed(answer, fid)
    if not answer.addresses:
        return Finding(
            fid,
            Status.OK,
            f"{_subject(answer.target)} is not listed on {answer.zone}",
            ttl_s=answer.ttl_s,
        )
    kinds = _kinds(answer)
    if any(kind in (_Kind.LIST_ERROR, _Kind.NOT_A_CODE) for kind in kinds.values()):
        # One made-up or error code makes the whole answer untrustworthy.
        return _not_an_answer(answer, fid, kinds)
    return _listed(answer, fid, kinds)


def _same_ip(text: str, ip: IPv4Address | IPv6Address | None) -> bool:
    return ip is not None and _ip(text) == ip


def interpret_static_ip(ip: str, answers: Sequence[DnsblAnswer]) -> Finding:
    """static_ip.<ip>: whether the Spamhaus PBL calls `ip` dynamic/end-user space.

    FAIL carries no outcome: the dnsbl finding of the same answer gates mail.
    UNKNOWN when no PBL zone was asked or none answered usably: nothing to tell by.
    """
    fid, address = f"static_ip.{ip}", _ip(ip)
    asked = [a for a in answers if _same_ip(a.target, address) and a.list_kind.answers_pbl]
    if not asked:
        return Finding(
            fid,
            Status.UNKNOWN,
            f"cannot tell whether {ip} is a static address: no Spamhaus ZEN or PBL zone "
            "(kind spamhaus-zen or spamhaus-pbl) was asked",
            "Add zen.spamhaus.org to [checks] dnsbl (queried through a local resolver)",
        )
    usable = [
        a
        for a in asked
        if a.addresses is not None
        and all(kind in (_Kind.LISTED, _Kind.PBL) for kind in _kinds(a).values())
    ]
    if not usable:
        first = asked[0]
        why = first.error or f"it answered {', '.join(first.addresses or ())}"
        return Finding(
            fid,
            Status.UNKNOWN,
            f"cannot tell whether {ip} is a static address: {first.zone} gave no usable "
            f"answer ({why})",
            f"See the dnsbl.{first.zone}.{first.target} finding",
            ttl_s=min(a.ttl_s for a in asked),
        )
    ttl = min(a.ttl_s for a in usable)
    for answer in usable:
        codes = [code for code, kind in _kinds(answer).items() if kind is _Kind.PBL]
        if codes:
            return Finding(
                fid,
                Status.FAIL,
                f"{ip} is in dynamic/end-user address space "
                f"({_codes_text(codes, answer.list_kind, ())}"
                f" on {answer.zone}): do not run a mail server without a static IP",
                _STATIC_FIX,
                None,
                ttl,
            )
    return Finding(
        fid,
        Status.OK,
        f"{ip} is not in the Spamhaus PBL (not listed as dynamic/end-user space)",
        ttl_s=ttl,
    )
