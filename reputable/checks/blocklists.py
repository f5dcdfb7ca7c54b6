"""The kinds of DNS blocklist reputable knows: each kind's published return codes, and a zone's kind from its name. Pure.

RFC 5782 §2.1 says only that a listing is an A record in 127.0.0.0/8 (never
127.0.0.1, the test point); what each code means, and which codes are the
list's errors, every list publishes for itself. A zone's name says little:
Spamhaus's data comes as the public mirrors (`zen.spamhaus.org`), as the
Data Query Service (`<key>.zen.dq.spamhaus.net`) and as rsync mirrors under
any local name, so `[checks] dnsbl` may name the kind of each zone.

The codes, as the lists publish them:

* Spamhaus, per zone: https://docs.spamhaus.com/datasets/docs/source/10-data-type-documentation/datasets/040-zones.html;
  the 127.255.255.0/24 error range: https://www.spamhaus.org/news/article/788/
  and https://www.spamhaus.org/faqs/dnsbl-usage/.
* SpamCop: 127.0.0.2 for a listed IP, https://www.spamcop.net/bl.shtml.
* Any other list (generic): any 127.0.0.0/8 answer but 127.0.0.1 is a listing,
  127.255.255.0/24 an error (the range Spamhaus, Abusix and others use), and
  an answer outside 127.0.0.0/8 no answer of a list at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from types import MappingProxyType

ERROR_RANGE = IPv4Network("127.255.255.0/24")  # errors, never listings, for every kind
DBL_IP_QUERY = "127.0.1.255"  # Spamhaus DBL/ZRD asked about an IP: "IP queries not allowed"


class DnsblKind(StrEnum):
    """What a `[checks] dnsbl` zone is, so that its answers are read by its own table."""

    SPAMHAUS_ZEN = "spamhaus-zen"
    SPAMHAUS_SBL = "spamhaus-sbl"
    SPAMHAUS_XBL = "spamhaus-xbl"
    SPAMHAUS_SBL_XBL = "spamhaus-sbl-xbl"
    SPAMHAUS_PBL = "spamhaus-pbl"
    SPAMHAUS_AUTHBL = "spamhaus-authbl"
    SPAMHAUS_DBL = "spamhaus-dbl"
    SPAMHAUS_ZRD = "spamhaus-zrd"
    SPAMCOP = "spamcop"
    GENERIC = "generic"

    @property
    def spamhaus(self) -> bool:
        return self.value.startswith("spamhaus-")

    @property
    def answers_pbl(self) -> bool:
        """Whether the list says if an IP is dynamic/end-user space (the Spamhaus PBL)."""
        return self in (DnsblKind.SPAMHAUS_ZEN, DnsblKind.SPAMHAUS_PBL)


@dataclass(frozen=True, slots=True)
class DnsblZone:
    """One `[checks] dnsbl` entry: the zone asked, and the kind of list it is."""

    zone: str
    kind: DnsblKind

    @classmethod
    def named(cls, zone: str) -> DnsblZone:
        """A zone whose kind its name says (kind_of_zone)."""
        return cls(zone, kind_of_zone(zone))


# Spamhaus's zone names, the same on the public mirrors and in DQS.
_SPAMHAUS_ZONES = MappingProxyType(
    {
        "zen": DnsblKind.SPAMHAUS_ZEN,
        "sbl": DnsblKind.SPAMHAUS_SBL,
        "xbl": DnsblKind.SPAMHAUS_XBL,
        "sbl-xbl": DnsblKind.SPAMHAUS_SBL_XBL,
        "pbl": DnsblKind.SPAMHAUS_PBL,
        "authbl": DnsblKind.SPAMHAUS_AUTHBL,
        "dbl": DnsblKind.SPAMHAUS_DBL,
        "zrd": DnsblKind.SPAMHAUS_ZRD,
    }
)
_PUBLIC_MIRROR = re.compile(r"(?P<name>[a-z-]+)\.spamhaus\.org")
_DQS = re.compile(r"(?P<key>[a-z0-9]+|<key>)\.(?P<name>[a-z-]+)\.dq\.spamhaus\.net")
DQS_KEY_SHOWN = "<key>"


def kind_of_zone(zone: str) -> DnsblKind:
    """The kind of list a zone's name says; GENERIC for any name it does not.

    Spamhaus's public mirrors `<name>.spamhaus.org` and DQS zones
    `<key>.<name>.dq.spamhaus.net` (its zone names: zen, sbl, xbl, sbl-xbl,
    pbl, authbl, dbl, zrd), and SpamCop's `bl.spamcop.net`.
    """
    name = zone.strip().rstrip(".").lower()
    match = _PUBLIC_MIRROR.fullmatch(name) or _DQS.fullmatch(name)
    if match is not None and match["name"] in _SPAMHAUS_ZONES:
        return _SPAMHAUS_ZONES[match["name"]]
    if name == "bl.spamcop.net":
        return DnsblKind.SPAMCOP
    return DnsblKind.GENERIC


def shown_zone(zone: str) -> str:
    """A zone's name as ids, summaries and log lines show it: a DQS zone's key (a secret
    that pays for the queries) replaced by `<key>`."""
    name = zone.strip().rstrip(".").lower()
    match = _DQS.fullmatch(name)
    if match is None:
        return name
    return f"{DQS_KEY_SHOWN}{name[match.end('key') :]}"


# --- the published codes ---

_SBL = {
    "127.0.0.2": "SBL spam source",
    "127.0.0.3": "SBL CSS low-reputation sender",
    "127.0.0.9": "DROP hijacked network",
    "127.0.0.30": "SBL BCL botnet controller",
}
_XBL = {f"127.0.0.{n}": "XBL exploited host" for n in range(4, 8)}
_PBL = {"127.0.0.10": "PBL ISP-maintained", "127.0.0.11": "PBL Spamhaus-maintained"}
_DBL = {
    "127.0.1.2": "DBL low-reputation domain",
    "127.0.1.4": "DBL phishing domain",
    "127.0.1.5": "DBL malware domain",
    "127.0.1.6": "DBL botnet C&C domain",
    "127.0.1.102": "DBL abused legitimate domain",
    "127.0.1.103": "DBL abused redirector domain",
    "127.0.1.104": "DBL abused domain used in phishing",
    "127.0.1.105": "DBL abused domain used by malware",
    "127.0.1.106": "DBL abused domain hosting a botnet C&C",
}
_ZRD = {f"127.0.2.{n}": f"ZRD domain first seen {n} hours ago" for n in range(2, 25)}

MEANINGS: Mapping[DnsblKind, Mapping[str, str]] = MappingProxyType(
    {
        DnsblKind.SPAMHAUS_ZEN: MappingProxyType(_SBL | _XBL | _PBL),
        DnsblKind.SPAMHAUS_SBL: MappingProxyType(dict(_SBL)),
        DnsblKind.SPAMHAUS_XBL: MappingProxyType(dict(_XBL)),
        DnsblKind.SPAMHAUS_SBL_XBL: MappingProxyType(_SBL | _XBL),
        DnsblKind.SPAMHAUS_PBL: MappingProxyType(dict(_PBL)),
        DnsblKind.SPAMHAUS_AUTHBL: MappingProxyType({"127.0.0.20": "AuthBL compromised login"}),
        DnsblKind.SPAMHAUS_DBL: MappingProxyType(dict(_DBL)),
        DnsblKind.SPAMHAUS_ZRD: MappingProxyType(dict(_ZRD)),
        DnsblKind.SPAMCOP: MappingProxyType({"127.0.0.2": "SpamCop reported spam source"}),
        DnsblKind.GENERIC: MappingProxyType({}),
    }
)
PBL_CODES = frozenset(_PBL)

# Spamhaus's error codes (any zone); 127.255.255.0/24 is an error for every kind.
ERROR_MEANINGS: Mapping[str, str] = MappingProxyType(
    {
        "127.255.255.252": "a typo in the DNSBL zone name",
        "127.255.255.254": "the query came through a public/open resolver",
        "127.255.255.255": "an excessive number of queries",
        DBL_IP_QUERY: "a domain list asked about an IP",
    }
)


def meaning_of(code: str, kind: DnsblKind) -> str:
    """What `code` means on a list of `kind`, as the list documents it; "" if it does not."""
    return MEANINGS[kind].get(code, "")


def is_pbl_code(code: str, kind: DnsblKind) -> bool:
    """Whether `code` says dynamic/end-user space: 127.0.0.10/11 on Spamhaus ZEN or PBL."""
    return kind.answers_pbl and code in PBL_CODES


def is_error_code(code: IPv4Address, kind: DnsblKind) -> bool:
    """Whether `code` is an error of the list, never a listing."""
    return code in ERROR_RANGE or (kind.spamhaus and str(code) == DBL_IP_QUERY)
