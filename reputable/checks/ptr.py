"""Reverse DNS of a sending IP (PTR, FCrDNS, generic names, HELO). Pure but `query_ptr`, `lookup`.

Gmail and Outlook refuse or junk mail from an IP whose PTR is missing or does
not resolve back to the same IP ("forward-confirmed reverse DNS", FCrDNS,
RFC 8601 §3 `iprev`), and score names that look like a residential pool as
suspicious. `lookup` is the one bounded DNS lookup both host checks share.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver

from reputable.checks.findings import Finding, Outcome, Status
from reputable.resolver import failure_reason

# dnspython's own default when a negative answer carries no SOA (RFC 2308 §5).
DEFAULT_TTL_S = 300

# RFC 7208 §4.6.4 caps the PTR names an SPF verifier checks at 10; a receiver
# checking FCrDNS looks no further, and neither do we.
MAX_PTR_NAMES = 10


def _empty_forward() -> Mapping[str, tuple[str, ...] | None]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PtrAnswers:
    """What DNS said about one sending IP's reverse and forward names."""

    ip: IPv4Address | IPv6Address
    names: tuple[str, ...] | None  # PTR targets, lower case, no dot; None: failed; (): no PTR
    error: str = ""  # why the PTR lookup failed
    # each PTR name -> its A (IPv4) or AAAA (IPv6) addresses; None: that lookup failed
    forward: Mapping[str, tuple[str, ...] | None] = field(default_factory=_empty_forward)
    helo_addresses: tuple[str, ...] | None = ()  # the HELO name's A/AAAA; None: failed
    ttl_s: int = DEFAULT_TTL_S  # the smallest TTL seen

    def __post_init__(self) -> None:
        # A read-only copy, so the frozen object cannot change under a reader.
        object.__setattr__(self, "forward", MappingProxyType(dict(self.forward)))


# --- one bounded lookup (I/O) ---


@dataclass(frozen=True, slots=True)
class Lookup:
    """One lookup's records as text; None when it failed (see error)."""

    records: tuple[str, ...] | None
    ttl_s: int = DEFAULT_TTL_S
    error: str = ""


def _rdata_text(rdata: dns.rdata.Rdata) -> str:
    if isinstance(rdata, dns.rdtypes.ANY.PTR.PTR):
        return rdata.target.to_text(omit_final_dot=True).lower()
    if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
        # One record, one text: its strings are joined (as RFC 7208 §3.3 does for SPF).
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return str(rdata.address)
    return rdata.to_text()


def _negative_ttl(response: object) -> int:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM) from the authority section, else the default.

    The SOA is looked for here: without one, dnspython 2.3 (Debian 12) says
    2**32 - 1 s where later versions say the default.
    """
    if not isinstance(response, dns.message.QueryMessage):
        return DEFAULT_TTL_S
    try:
        chain = response.resolve_chaining()
    except (dns.exception.DNSException, KeyError, ValueError):
        return DEFAULT_TTL_S
    has_soa = any(
        rrset.rdtype == dns.rdatatype.SOA and chain.canonical_name.is_subdomain(rrset.name)
        for rrset in response.authority
    )
    return int(chain.minimum_ttl) if has_soa else min(int(chain.minimum_ttl), DEFAULT_TTL_S)


def lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str, timeout_s: float) -> Lookup:
    """The `rdtype` records at `name` (absolute), the whole lookup bounded by `timeout_s`.

    NXDOMAIN and an empty answer are both `()`; their TTL is the negative
    caching TTL. Never raises for a DNS problem: it comes back as an error.
    """
    try:
        answer = resolver.resolve(
            dns.name.from_text(name, origin=dns.name.root),
            rdtype,
            raise_on_no_answer=False,
            lifetime=timeout_s,
            search=False,
        )
    except dns.resolver.NXDOMAIN as exc:
        responses = exc.kwargs.get("responses", {})
        return Lookup((), _negative_ttl(next(iter(responses.values()), None)))
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        return Lookup(None, error=failure_reason(exc, timeout_s))
    if answer.rrset is None:
        return Lookup((), _negative_ttl(answer.response))
    ttl = int(answer.chaining_result.minimum_ttl)
    return Lookup(tuple(_rdata_text(rdata) for rdata in answer), ttl)


# --- asking (I/O) ---


def _address_type(ip: IPv4Address | IPv6Address) -> str:
    return "A" if ip.version == 4 else "AAAA"


def _normal_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _is_fqdn(name: str) -> bool:
    """RFC 5321 §4.1.1.1: EHLO carries a fully-qualified domain name (or an address literal)."""
    return "." in name and not name.startswith("[") and _parse_ip(name) is None


def query_ptr(
    ip: IPv4Address | IPv6Address | str,
    helo_name: str,
    resolver: dns.resolver.Resolver,
    timeout_s: float,
) -> PtrAnswers:
    """Ask for the PTR of `ip`, each PTR name's A/AAAA and the HELO name's A/AAAA.

    Two rounds, each lookup bounded by `timeout_s`: the PTR and the HELO name
    together, then every PTR name (at most MAX_PTR_NAMES) in parallel; so the
    call returns within about twice `timeout_s` whatever the servers do.
    """
    address = ipaddress.ip_address(ip)
    rdtype = _address_type(address)
    helo = _normal_name(helo_name)
    with ThreadPoolExecutor(max_workers=MAX_PTR_NAMES + 1) as pool:
        ptr_job = pool.submit(lookup, resolver, address.reverse_pointer, "PTR", timeout_s)
        helo_job = (
            pool.submit(lookup, resolver, helo, rdtype, timeout_s) if _is_fqdn(helo) else None
        )
        ptr = ptr_job.result()
        names = tuple(dict.fromkeys(ptr.records)) if ptr.records is not None else None
        forward_jobs = {
            name: pool.submit(lookup, resolver, name, rdtype, timeout_s)
            for name in (names or ())[:MAX_PTR_NAMES]
        }
        forward = {name: job.result() for name, job in forward_jobs.items()}
        helo_result = helo_job.result() if helo_job is not None else Lookup(())
    ttls = [ptr.ttl_s, helo_result.ttl_s, *(result.ttl_s for result in forward.values())]
    return PtrAnswers(
        ip=address,
        names=names,
        error=ptr.error,
        forward={name: result.records for name, result in forward.items()},
        helo_addresses=helo_result.records,
        ttl_s=min(ttls),
    )


# --- interpreting (pure) ---


def _parse_ip(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _resolves_to(addresses: tuple[str, ...] | None, ip: IPv4Address | IPv6Address) -> bool:
    return any(_parse_ip(address) == ip for address in addresses or ())


def _forward_of(answers: PtrAnswers) -> dict[str, tuple[str, ...] | None]:
    return {_normal_name(name): addresses for name, addresses in answers.forward.items()}


def _ptr_names(answers: PtrAnswers) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_normal_name(name) for name in answers.names or ()))


def _confirmed_name(answers: PtrAnswers) -> str:
    """The first PTR name whose A/AAAA includes the IP (FCrDNS), or ""."""
    forward = _forward_of(answers)
    for name in _ptr_names(answers):
        if _resolves_to(forward.get(name), answers.ip):
            return name
    return ""


def _ptr_fix(ip: IPv4Address | IPv6Address, example: str, lead: str = "Ask") -> str:
    record = _address_type(ip)
    return (
        f"{lead} the provider of {ip} (the owner of its reverse zone, {ip.reverse_pointer}) "
        f"for a PTR naming your mail host, e.g. {example}, and give that name an {record} "
        f"record back to {ip}"
    )


def _ptr_finding(answers: PtrAnswers, helo: str) -> Finding:
    ip = answers.ip
    fid, ttl = f"ptr.{ip}", answers.ttl_s
    if answers.names is None:
        return Finding(
            fid,
            Status.WARN,
            f"cannot look up the PTR of {ip}: {answers.error or 'the lookup failed'}",
            f"Check that the [dns] nameservers answer (dig -x {ip}); it is asked again at "
            "the next refresh",
            Outcome.DNS_ERROR,
            ttl,
        )
    example = helo if _is_fqdn(helo) else "mail.example.com"
    names = _ptr_names(answers)
    if not names:
        return Finding(
            fid,
            Status.FAIL,
            f"{ip} has no PTR record (no reverse DNS): Gmail and Outlook reject or junk its mail",
            _ptr_fix(ip, example),
            Outcome.PTR,
            ttl,
        )
    confirmed = _confirmed_name(answers)
    if confirmed:
        return Finding(
            fid,
            Status.OK,
            f"{ip} has PTR {confirmed}, which resolves back to it (forward-confirmed)",
            outcome=None,
            ttl_s=ttl,
        )
    forward = _forward_of(answers)
    failed = [name for name in names[:MAX_PTR_NAMES] if forward.get(name) is None]
    if failed:
        return Finding(
            fid,
            Status.WARN,
            f"cannot confirm the PTR of {ip}: the lookup of {failed[0]} failed",
            "Check that the [dns] nameservers answer; it is asked again at the next refresh",
            Outcome.DNS_ERROR,
            ttl,
        )
    record = _address_type(ip)
    problems = "; ".join(
        f"{name} resolves to {', '.join(forward[name] or ())}, not {ip}"
        if forward[name]
        else f"{name} has no {record} record"
        for name in names[:MAX_PTR_NAMES]
    )
    return Finding(
        fid,
        Status.FAIL,
        f"PTR of {ip} is not forward-confirmed: {problems}",
        f"Add an {record} record {names[0]} -> {ip}, or " + _ptr_fix(ip, example, "ask"),
        Outcome.PTR,
        ttl,
    )


# --- generic (residential-looking) names ---

# Words ISPs put in the names of dynamic and residential pools; receivers
# (Spamhaus PBL, rspamd hfilter, SpamAssassin RDNS_DYNAMIC) score them so.
_GENERIC_WORDS = frozenset(
    {
        *("dynamic", "dyn", "dynip", "dip", "pool", "dhcp", "nat", "unassigned", "generic"),
        *("dsl", "adsl", "vdsl", "xdsl", "sdsl", "cable", "broadband", "cpe", "residential"),
        *("ppp", "pppoe", "dialup", "dial", "dialin", "resnet"),
        *("client", "clients", "customer", "customers", "cust", "subscriber"),
    }
)
# Words that are generic only next to digits ("host-5", "static-203", "ip5", "vps123").
_NUMBERED_WORDS = re.compile(r"(?:^|[.\-_])(host|static|ip|vps|node)[\-_]?\d")
# Default names cloud and hosting providers give every address.
_PROVIDER_DEFAULTS = (
    ".amazonaws.com",
    ".googleusercontent.com",
    ".linodeusercontent.com",
    ".members.linode.com",
    ".vultrusercontent.com",
    ".your-server.de",
    ".contaboserver.net",
    ".cloudapp.net",
    ".cloudapp.azure.com",
    ".in-addr.arpa",
    ".ip6.arpa",
)


def _ip_forms(ip: IPv4Address | IPv6Address) -> list[tuple[str, str]]:
    """(text, the characters that may not touch it) for the ways ISPs write an IP in a name."""
    if ip.version == 4:
        octets = [str(octet) for octet in ip.packed]
        padded = [f"{octet:03d}" for octet in ip.packed]
        forms = [
            separator.join(parts)
            for parts in (octets, octets[::-1], padded, padded[::-1])
            for separator in ("-", ".", "_")
        ]
        # Run together only when zero-padded: "20301135" could be anything.
        forms += ["".join(padded), "".join(padded[::-1])]
        return [(form, "0-9") for form in forms] + [(f"{int(ip):08x}", "0-9a-f")]
    exploded = ip.exploded.split(":")
    hex_forms = [
        "".join(exploded),
        "-".join(exploded),
        ip.compressed.replace(":", "-"),
        ".".join(reversed("".join(exploded))),
    ]
    return [(form, "0-9a-f") for form in hex_forms]


def generic_reason(name: str, ip: IPv4Address | IPv6Address) -> str:
    """Why `name` looks like an ISP's or cloud's generic name for `ip`, or "" if it does not."""
    name = _normal_name(name)
    for form, digits in _ip_forms(ip):
        if re.search(f"(?<![{digits}]){re.escape(form)}(?![{digits}])", name):
            return f"it contains the address as {form}"
    words = set(re.findall(r"[a-z]+", name)) & _GENERIC_WORDS
    if words:
        return f"it contains {', '.join(repr(word) for word in sorted(words))}"
    numbered = _NUMBERED_WORDS.search(name)
    if numbered:
        return f"it contains {numbered.group(1)!r} followed by a number"
    for suffix in _PROVIDER_DEFAULTS:
        if name.endswith(suffix) or name == suffix[1:]:
            return f"it is the provider's default name (*{suffix})"
    return ""


def _generic_finding(answers: PtrAnswers, helo: str) -> Finding | None:
    for name in _ptr_names(answers):
        reason = generic_reason(name, answers.ip)
        if reason:
            example = helo if _is_fqdn(helo) else "mail.example.com"
            return Finding(
                f"ptr_generic.{answers.ip}",
                Status.WARN,
                f"PTR {name} of {answers.ip} looks generic ({reason}): receivers score such "
                "names as residential or dynamic space",
                f"Ask the provider of {answers.ip} to set its PTR to your mail host's own name, "
                f"e.g. {example}, with an {_address_type(answers.ip)} record back to it",
                None,
                answers.ttl_s,
            )
    return None


# --- HELO ---


def _helo_finding(answers: PtrAnswers, helo: str) -> Finding:
    """helo.<ip>: the HELO name is fully qualified, resolves to the IP and is its PTR name.

    Receivers compare all three (Spamhaus, rspamd hfilter, SpamAssassin's HELO
    rules); anything less is an advisory warning with the fix.
    """
    ip, fid, ttl = answers.ip, f"helo.{answers.ip}", answers.ttl_s
    names = _ptr_names(answers)
    ptr_name = _confirmed_name(answers) or (names[0] if names else "")
    if not helo:
        target = ptr_name or "the PTR name of " + str(ip)
        return Finding(
            fid,
            Status.WARN,
            "the HELO name is unknown",
            f"Set [host] helo_name (and Postfix smtp_helo_name) to {target}",
            None,
            ttl,
        )
    if not _is_fqdn(helo):
        return Finding(
            fid,
            Status.WARN,
            f"HELO {helo} is not a fully-qualified domain name (RFC 5321 §4.1.1.1): many "
            "receivers reject it",
            f"Set Postfix smtp_helo_name to {ptr_name or 'a name with an A record to ' + str(ip)}",
            None,
            ttl,
        )
    return _helo_named(answers, helo, ptr_name)


def _helo_resolves(answers: PtrAnswers, helo: str) -> bool:
    # Its own lookup, or the PTR round's lookup of the same name when it is a PTR name.
    forward = _forward_of(answers).get(helo)
    return _resolves_to(answers.helo_addresses, answers.ip) or _resolves_to(forward, answers.ip)


def _helo_named(answers: PtrAnswers, helo: str, ptr_name: str) -> Finding:
    ip, fid, ttl = answers.ip, f"helo.{answers.ip}", answers.ttl_s
    names, record = _ptr_names(answers), _address_type(ip)
    set_helo = "Set Postfix smtp_helo_name (and [host] helo_name, if set) to"

    def warn(summary: str, fix: str) -> Finding:
        return Finding(fid, Status.WARN, summary, fix, None, ttl)

    if _helo_resolves(answers, helo):
        if helo in names:
            summary = f"HELO {helo} is the PTR name of {ip} and resolves to it"
            return Finding(fid, Status.OK, summary, ttl_s=ttl)
        if ptr_name:
            return warn(
                f"PTR names {ptr_name}, HELO says {helo}: it resolves to {ip} but is not the "
                "PTR name, and receivers compare the two",
                f"{set_helo} {ptr_name} (the PTR name), or have the PTR of {ip} changed to {helo}",
            )
        return warn(
            f"HELO {helo} resolves to {ip}, but {ip} has no PTR to match it",
            f"Ask the provider of {ip} for a PTR naming {helo}",
        )
    looked_up = (
        "its lookup failed" if answers.helo_addresses is None else f"it does not resolve to {ip}"
    )
    if helo in names and answers.helo_addresses is None:
        return warn(
            f"HELO {helo} is the PTR name of {ip}, but whether it resolves to {ip} is unknown: "
            "its lookup failed",
            "Check that the [dns] nameservers answer; it is asked again at the next refresh",
        )
    if helo in names:
        return warn(
            f"HELO {helo} is the PTR name of {ip}, but {looked_up}",
            f"Give {helo} an {record} record to {ip}",
        )
    if ptr_name:
        return warn(
            f"PTR names {ptr_name}, HELO says {helo} ({looked_up})",
            f"{set_helo} {ptr_name} (the PTR name), or the reverse: have the PTR of {ip} "
            f"changed to {helo} with an {record} record back to {ip}",
        )
    return warn(
        f"HELO says {helo}, {ip} has no PTR to compare with, and {looked_up}",
        f"Give {helo} an {record} record to {ip} and ask the provider of {ip} for a PTR naming "
        f"{helo}",
    )


def interpret_ptr(answers: PtrAnswers, helo_name: str) -> list[Finding]:
    """The ptr.<ip> finding, ptr_generic.<ip> when the name looks generic, and helo.<ip>."""
    helo = _normal_name(helo_name)
    findings = [_ptr_finding(answers, helo)]
    generic = _generic_finding(answers, helo)
    if generic is not None:
        findings.append(generic)
    findings.append(_helo_finding(answers, helo))
    return findings
