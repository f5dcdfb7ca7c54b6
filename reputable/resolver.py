"""The one place that builds a dnspython resolver from `[dns]`. I/O (reads /etc/resolv.conf).

Everything in reputable that looks a name up recursively gets its resolver
here, so that `[dns] nameservers` and `timeout` apply everywhere (and tests
can point every lookup at their own server).
"""

from __future__ import annotations

import time
from pathlib import Path

import dns.exception
import dns.name
import dns.resolver

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
                    f"none usable ({exc})",
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


def failure_reason(exc: Exception, timeout_s: float) -> str:
    """Why a bounded lookup failed, in a few words."""
    if isinstance(exc, dns.exception.Timeout | NoTimeLeft):
        return f"no answer within {timeout_s:g} s"
    return str(exc) or type(exc).__name__
