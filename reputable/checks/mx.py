"""Whether a From domain's MX points back at this host (advisory). Interpreting is pure; query_mx does I/O.

The seed's receivers like the MX of a sender's domain to resolve to the
sending IP: the domain can take the replies and bounces its mail causes.
Mail received elsewhere is fine, so nothing here gates mail.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdtypes.ANY.MX
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver

from reputable.checks.findings import Finding, Outcome, Status
from reputable.resolver import NoTimeLeft, failure_reason, resolve_by

DEFAULT_TTL_S = 300  # when no answer carried a TTL
RETRY_TTL_S = 60  # how long a DNS failure is believed before asking again
MAX_HOSTS = 10  # MX hosts whose addresses are looked up, by preference
NULL_MX = "."  # RFC 7505: one MX with preference 0 and exchange "."


@dataclass(frozen=True, slots=True)
class MxAnswers:
    """The MX records of `domain` and the addresses of their hosts.

    `hosts` is (preference, exchange) by preference, exchange "." for a
    null MX; None when the domain has no MX record (NXDOMAIN or none).
    `addresses` maps each exchange looked up to its A and AAAA addresses.
    `error` says what could not be looked up.
    """

    domain: str
    hosts: tuple[tuple[int, str], ...] | None
    addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    error: str = ""
    ttl_s: int = DEFAULT_TTL_S


def _normal(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def _exchange_text(name: dns.name.Name) -> str:
    return NULL_MX if name == dns.name.root else name.to_text(omit_final_dot=True).lower()


def _why(what: str, exc: Exception, timeout_s: float) -> str:
    return f"{what}: {failure_reason(exc, timeout_s)}"


def query_mx(domain: str, resolver: dns.resolver.Resolver, timeout_s: float) -> MxAnswers:
    """The MX records of `domain` and the A/AAAA addresses of (at most 10 of) their hosts.

    All queries within `timeout_s`; DNS trouble is `error`, never raised.
    """
    domain = _normal(domain)
    deadline = time.monotonic() + timeout_s
    try:
        answer = resolve_by(resolver, domain, "MX", deadline)
    except (dns.exception.DNSException, NoTimeLeft) as exc:
        return MxAnswers(domain, None, {}, _why(f"MX {domain}", exc, timeout_s), RETRY_TTL_S)
    if answer is None or answer.rrset is None:
        return MxAnswers(domain, None)
    ttls = [answer.chaining_result.minimum_ttl]
    hosts = tuple(
        sorted(
            (rd.preference, _exchange_text(rd.exchange))
            for rd in answer.rrset
            if isinstance(rd, dns.rdtypes.ANY.MX.MX)
        )
    )
    addresses: dict[str, tuple[str, ...]] = {}
    errors: list[str] = []
    for _, host in hosts[:MAX_HOSTS]:
        if host == NULL_MX or host in addresses:
            continue
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                result = resolve_by(resolver, host, rdtype, deadline)
            except (dns.exception.DNSException, NoTimeLeft) as exc:
                errors.append(_why(f"{rdtype} {host}", exc, timeout_s))
                continue
            if result is None:
                break  # NXDOMAIN: the host has no address of any type
            if result.rrset is not None:
                ttls.append(result.chaining_result.minimum_ttl)
                found.extend(
                    rd.address
                    for rd in result.rrset
                    if isinstance(rd, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA)
                )
        addresses[host] = tuple(found)
    ttl = RETRY_TTL_S if errors else min(ttls)
    return MxAnswers(domain, hosts, addresses, "; ".join(errors), ttl)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def interpret_mx(answers: MxAnswers, sending_ips: Sequence[str]) -> Finding:
    """The checklist line for the MX of a From domain; id "mx.<domain>". Advisory only.

    OK when an MX host resolves to one of `sending_ips`; a warning when the
    domain has no MX, a null MX (RFC 7505), or MX hosts elsewhere; a DNS
    error is dns_error.
    """
    domain = _normal(answers.domain)
    fid = f"mx.{domain}"
    ttl = answers.ttl_s
    ours = {address for address in map(_address, sending_ips) if address is not None}
    shown_ips = ", ".join(str(address) for address in sorted(ours, key=str)) or "none known"
    point_fix = (
        f"add an MX record for {domain} naming this host (e.g. {domain}. MX 10 <this host's name>.)"
    )
    if answers.hosts is None:
        if answers.error:
            return Finding(
                fid,
                Status.WARN,
                f"cannot look up the MX of {domain}: {answers.error}",
                f"check that the name servers of {domain} answer, and [dns] nameservers",
                Outcome.DNS_ERROR,
                ttl,
            )
        return Finding(
            fid,
            Status.WARN,
            f"{domain} has no MX record: mail to it falls back to its address (RFC 5321 §5.1), "
            "and receivers look for a From domain that can take replies",
            point_fix,
            ttl_s=ttl,
        )
    if any(host == NULL_MX for _, host in answers.hosts):
        return Finding(
            fid,
            Status.WARN,
            f"{domain} has a null MX (RFC 7505): it accepts no mail, so replies and bounces to "
            "it fail, and receivers may refuse mail from it (RFC 7505 §4.2)",
            f"replace the null MX of {domain} by an MX naming a host that takes mail",
            ttl_s=ttl,
        )
    matches = [
        (host, text)
        for host, texts in answers.addresses.items()
        for text in texts
        if _address(text) in ours
    ]
    if matches:
        host, text = matches[0]
        return Finding(
            fid,
            Status.OK,
            f"the MX of {domain} points at this host: {host} ({text})",
            ttl_s=ttl,
        )
    names = ", ".join(host for _, host in answers.hosts)
    if answers.error:
        return Finding(
            fid,
            Status.WARN,
            f"cannot tell whether an MX of {domain} ({names}) is this host: {answers.error}",
            f"check that the name servers of {domain} answer, and [dns] nameservers",
            Outcome.DNS_ERROR,
            ttl,
        )
    return Finding(
        fid,
        Status.WARN,
        f"no MX host of {domain} ({names}) resolves to a sending IP ({shown_ips}): fine when "
        "mail is received elsewhere, but receivers like a From domain's MX to point back at "
        "the sender",
        point_fix + ", or leave it if mail for the domain is received elsewhere",
        ttl_s=ttl,
    )
