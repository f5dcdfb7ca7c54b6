"""What to do with one message: whether it is outbound, and which keys sign it. Pure.

The milter session and the `sign` filter gather the facts; this module holds
every policy decision so that it is tested without a milter, a socket or a
resolver.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from reputable.author import author_domain
from reputable.config import TrustConfig
from reputable.keys.keyring import Keyring
from reputable.signing.signature import SigningKey

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Source(StrEnum):
    """Why a message counts as outbound (or not)."""

    INTERNAL = "internal"  # the client is in [trust] internal_hosts
    AUTHENTICATED = "authenticated"  # SMTP AUTH ({auth_authen})
    LOCAL = "local"  # local submission (sendmail, through non_smtpd_milters)
    FILTER = "filter"  # the `sign` command: the caller vouches for the message
    EXTERNAL = "external"  # anything else: passed untouched


class Reason(StrEnum):
    """Why a message is not signed; the values are the log's `reason` field."""

    NOT_OUTBOUND = "not_outbound"
    NO_FROM = "no_from"
    MULTIPLE_FROM = "multiple_from"
    FROM_UNPARSABLE = "from_unparsable"
    FROM_NO_ADDRESS = "from_no_address"
    MULTIPLE_AUTHOR_DOMAINS = "multiple_author_domains"
    DOMAIN_NOT_SIGNED = "domain_not_signed"
    NO_KEY = "no_key"


@dataclass(frozen=True, slots=True)
class Envelope:
    client_ip: IPAddress | None  # None: not an IP connection
    auth_user: str | None = None
    local_submission: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    source: Source
    from_domain: str | None
    keys: tuple[SigningKey, ...]  # empty: do not sign
    reason: Reason | None  # set exactly when keys is empty


def classify_source(envelope: Envelope, trust: TrustConfig) -> Source:
    if envelope.local_submission:
        return Source.LOCAL
    if trust.authenticated and envelope.auth_user:
        return Source.AUTHENTICATED
    ip = envelope.client_ip
    if ip is not None:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in trust.internal_hosts):
            return Source.INTERNAL
    return Source.EXTERNAL


def decide(
    source: Source, from_values: Sequence[bytes], domains: Sequence[str], keyring: Keyring
) -> Verdict:
    """Sign outbound mail whose single author domain we sign for and hold a key for."""
    author = author_domain(from_values)
    if source is Source.EXTERNAL:
        return Verdict(source, author.domain, (), Reason.NOT_OUTBOUND)
    if author.domain is None:
        assert author.problem is not None
        return Verdict(source, None, (), Reason(author.problem.value))
    if author.domain not in domains:
        return Verdict(source, author.domain, (), Reason.DOMAIN_NOT_SIGNED)
    keys = keyring.keys_for(author.domain)
    if not keys:
        return Verdict(source, author.domain, (), Reason.NO_KEY)
    return Verdict(source, author.domain, keys, None)
