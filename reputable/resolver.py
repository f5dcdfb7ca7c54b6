"""The one place that builds a dnspython resolver from `[dns]`. I/O (reads /etc/resolv.conf).

Everything in reputable that looks a name up recursively gets its resolver
here, so that `[dns] nameservers` and `timeout` apply everywhere (and tests
can point every lookup at their own server).
"""

from __future__ import annotations

import errno
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.resolver
import dns.tsig

from reputable.config import DnsConfig, Nameserver
from reputable.errors import ConfigError, Problem

RESOLV_CONF = Path("/etc/resolv.conf")

# RFC 6891 §6.2.5 and DNS Flag Day 2020: 1232 bytes avoids IP fragmentation
# on any path; a 2048-bit DKIM key record (about 450 bytes) fits easily and a
# larger answer comes with TC set, so dnspython retries it over TCP.
EDNS_PAYLOAD = 1232

# A dead first server must not use up the whole bound of a lookup: each try
# gets an equal share of `timeout` among at most this many servers.
_SHARED_TRIES = 3


def build_resolver(config: DnsConfig, *, resolv_conf: Path = RESOLV_CONF) -> dns.resolver.Resolver:
    """A stub resolver asking `config.nameservers` (each with its port), else resolv.conf's.

    `lifetime` (the bound on one lookup, all retries included) is
    `config.timeout_s`; one try at one server gets an equal share of it. The
    resolver never appends search domains: names are taken as absolute.
    Raises ConfigError when no nameserver is configured anywhere, or when one
    address is configured with two ports.
    """
    return _build(config.nameservers, "nameservers", config.timeout_s, resolv_conf)


def build_dnsbl_resolver(
    config: DnsConfig, *, resolv_conf: Path = RESOLV_CONF
) -> dns.resolver.Resolver:
    """The resolver for DNSBL queries: `config.dnsbl_nameservers`, else as `build_resolver`.

    Kept apart because the big lists refuse or mislead public resolvers
    (Spamhaus answers 127.255.255.254 through 8.8.8.8), while record checks
    may well use one.
    """
    if not config.dnsbl_nameservers:
        return build_resolver(config, resolv_conf=resolv_conf)
    return _build(config.dnsbl_nameservers, "dnsbl_nameservers", config.timeout_s, resolv_conf)


def nameserver_addresses(resolver: dns.resolver.Resolver) -> list[tuple[str, int]]:
    """The (address, port) of each server `resolver` asks, in order, on every dnspython we support.

    dnspython 2.3 (Debian 12) holds IP strings, their ports in `nameserver_ports`;
    later versions may hold `dns.nameserver.Nameserver` objects instead.
    """
    return [
        (server, resolver.nameserver_ports.get(server, resolver.port))
        if isinstance(server, str)
        else (server.answer_nameserver(), server.answer_port())
        for server in resolver.nameservers
    ]


def _build(
    servers: tuple[Nameserver, ...], key: str, timeout_s: float, resolv_conf: Path
) -> dns.resolver.Resolver:
    if servers:
        resolver = dns.resolver.Resolver(configure=False)
        # dnspython 2.3 has no dns.nameserver: a server's port goes in
        # nameserver_ports, keyed by IP. Later versions still read it for
        # servers given as IP strings, so this one way works on all of them.
        resolver.nameserver_ports = _ports_by_address(servers, key)
        resolver.nameservers = [ns.host for ns in servers]
    else:
        resolver = _read_resolv_conf(resolv_conf)
    resolver.search = []
    resolver.use_search_by_default = False
    resolver.lifetime = timeout_s
    resolver.timeout = timeout_s / max(1, min(len(resolver.nameservers), _SHARED_TRIES))
    resolver.use_edns(0, 0, EDNS_PAYLOAD)
    return resolver


def _ports_by_address(servers: tuple[Nameserver, ...], key: str) -> dict[str, int]:
    """Each server's port by its address; ConfigError when one address comes with two ports.

    A port keyed by address cannot tell two servers on one address apart: rather
    than silently ask only one of them, refuse the configuration.
    """
    ports: dict[str, int] = {}
    for ns in servers:
        if ports.setdefault(ns.host, ns.port) != ns.port:
            listed = ", ".join(f'"{s}"' for s in servers if s.host == ns.host)
            allowed = "one port per address (dnspython keys a server's port by its address)"
            raise ConfigError([Problem("[dns]", key, f"[{listed}]", allowed)])
    return ports


def _read_resolv_conf(resolv_conf: Path) -> dns.resolver.Resolver:
    try:
        return dns.resolver.Resolver(filename=str(resolv_conf), configure=True)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ConfigError(
            [
                Problem(
                    str(resolv_conf),
                    "nameserver",
                    f"none usable ({failure_reason(exc)})",
                    'a "nameserver IP" line there, or [dns] nameservers = ["192.0.2.53"]',
                )
            ]
        ) from None


class NoTimeLeft(Exception):
    """A bounded lookup's deadline passed before its query could be sent."""


def resolve_by(
    resolver: dns.resolver.Resolver, name: str, rdtype: str, deadline: float
) -> dns.resolver.Answer | None:
    """`rdtype` at `name` with what is left until `deadline` (time.monotonic()); None for NXDOMAIN.

    Raises NoTimeLeft past the deadline, DNSException when the lookup fails.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise NoTimeLeft
    try:
        return resolver.resolve(
            dns.name.from_text(name),
            rdtype,
            raise_on_no_answer=False,
            lifetime=remaining,
            search=False,
        )
    except dns.resolver.NXDOMAIN:
        return None


def failure_reason(exc: BaseException, timeout_s: float | None = None) -> str:
    """Why a lookup failed, in a few words of ours; the one place that says it. Pure.

    Never dnspython's own message ("All nameservers failed to answer the
    query ...", "There is no SOA RR at the DNS root name. This should never
    happen!"): those reach `check`, `keys list`, logs and mail headers.
    The words: a timeout, the rcode(s) the servers gave (SERVFAIL, REFUSED),
    NXDOMAIN, "resolver denies the root", "no name servers", an unreachable
    server, a malformed answer or name.
    """
    if isinstance(exc, dns.exception.Timeout | NoTimeLeft | TimeoutError):
        return _timeout_text(timeout_s)
    if isinstance(exc, dns.resolver.NoRootSOA):
        return f"{ROOT_DENIED}: no SOA at the DNS root"
    if isinstance(exc, dns.resolver.NXDOMAIN):
        asked = exc.kwargs.get("qnames") or []
        if any(name == dns.name.root for name in asked):
            return f"{ROOT_DENIED}: NXDOMAIN for the DNS root"
        return "NXDOMAIN (no such name)"
    if isinstance(exc, dns.resolver.NoNameservers):
        return _server_errors(exc.kwargs.get("errors") or [], timeout_s)
    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return "no name servers configured"
    for kinds, words in _WORDS:
        if isinstance(exc, kinds):
            return words
    if isinstance(exc, OSError):
        return _unreachable(exc)
    return f"unexpected DNS failure ({type(exc).__name__})"


ROOT_DENIED = "resolver denies the root"

# Checked in order: a name error is also a FormError or SyntaxError.
_WORDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (dns.resolver.YXDOMAIN, "YXDOMAIN"),
    (dns.resolver.NoAnswer, "no record of that type"),
    (dns.resolver.NoMetaqueries, "a meta-query, which resolvers do not answer"),
    (
        (
            dns.name.EmptyLabel,
            dns.name.BadEscape,
            dns.name.LabelTooLong,
            dns.name.NameTooLong,
            dns.name.NeedAbsoluteNameOrOrigin,
            dns.name.IDNAException,
            dns.name.BadLabelType,
            dns.name.AbsoluteConcatenation,
            dns.name.NoParent,
            dns.exception.SyntaxError,
        ),
        "not a valid DNS name",
    ),
    (dns.message.Truncated, "truncated answer"),
    (dns.message.UnknownTSIGKey, "the answer is signed with an unknown TSIG key"),
    ((dns.tsig.BadSignature, dns.tsig.BadKey), "the answer's TSIG signature does not verify"),
    (dns.tsig.BadTime, "the answer's TSIG time is out of range (are the clocks in sync?)"),
    (dns.tsig.PeerError, "the server rejected our TSIG signature"),
    (dns.query.UnexpectedSource, "an answer from an unexpected address"),
    (
        (dns.exception.FormError, dns.message.ShortHeader, dns.message.TrailingJunk),
        "malformed answer",
    ),
    (EOFError, "the server closed the connection"),
    (ValueError, "not a valid query (a bad name or address)"),
)


def _timeout_text(timeout_s: float | None) -> str:
    return "timeout" if timeout_s is None else f"timeout: no answer within {timeout_s:g} s"


def _unreachable(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"server unreachable ({exc.strerror or name or type(exc).__name__})"


def _server_errors(errors: list[tuple[object, ...]], timeout_s: float | None) -> str:
    """What each server gave, as our words, each kind once: e.g. "SERVFAIL, REFUSED".

    dnspython lists (server, tcp, port, error, response) per try; `error`
    is the rcode's text or the exception that try raised.
    """
    reasons: list[str] = []
    for entry in errors:
        error = entry[3] if len(entry) > 3 else None
        if isinstance(error, str):
            reason = error if _is_rcode(error) else "malformed answer"
        elif isinstance(error, BaseException):
            reason = failure_reason(error, timeout_s)
        else:
            reason = "no answer"
        if reason not in reasons:
            reasons.append(reason)
    return ", ".join(reasons) or "no name server answered"


def _is_rcode(text: str) -> bool:
    try:
        dns.rcode.from_text(text)
    except dns.exception.DNSException:
        return False
    return not text.isdigit()
