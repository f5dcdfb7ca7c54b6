"""Whether receivers find our DKIM keys in DNS, as checklist lines. Interpreting is pure; query_dkim_records does I/O.

The asking and judging is keys.dnscheck's (every authoritative server,
RFC 6376 §3.6.2.2); this module turns its verdict into what it means for
outbound mail: a key receivers cannot find fails every signature it makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import dns.resolver

from reputable.checks.dmarc import KeyRecord
from reputable.checks.findings import Finding, Outcome, Status
from reputable.config import Nameserver
from reputable.keys.dnscheck import DnsStatus, RecordCheck, check_key_record
from reputable.keys.record import record_name, record_value
from reputable.signing.signature import SigningKey

RETRY_TTL_S = 60  # how long a failed or unfinished check is believed before asking again
DEFAULT_TTL_S = 300
_PARALLEL_KEYS = 8


def interpret_dkim_record(selector: str, domain: str, check: RecordCheck) -> Finding:
    """The checklist line for one key's record; id "dkim.<selector>.<domain>".

    MATCHING is OK (a warning under t=y); MISSING or MISMATCH gate as
    dkim_record, since every signature with that s= fails at the receiver
    (RFC 6376 §6.1.2); ERROR is a DNS error; NOT_CHECKED a warning.
    """
    fid = f"dkim.{selector}.{domain}"
    name = record_name(selector, domain)
    publish = (
        f"publish the record `reputable keys dns {domain}` prints for s={selector} at {name} "
        "on every name server of the zone"
    )
    match check.status:
        case DnsStatus.MATCHING if check.testing:
            return Finding(
                fid,
                Status.WARN,
                f"{name}: {check.detail}",
                f"remove t=y from the record at {name} once mail verifies",
                ttl_s=DEFAULT_TTL_S,
            )
        case DnsStatus.MATCHING:
            return Finding(fid, Status.OK, f"{name}: {check.detail}", ttl_s=DEFAULT_TTL_S)
        case DnsStatus.MISSING | DnsStatus.MISMATCH:
            what = "is not published" if check.status is DnsStatus.MISSING else "is wrong"
            return Finding(
                fid,
                Status.FAIL,
                f"the key record {name} {what}, so every signature with s={selector} "
                f"d={domain} fails at the receiver: {check.detail}",
                publish,
                Outcome.DKIM_RECORD,
                RETRY_TTL_S,
            )
        case DnsStatus.ERROR:
            return Finding(
                fid,
                Status.WARN,
                f"cannot check the key record {name}: {check.detail}",
                f"check that the name servers of {domain} answer, and [dns] nameservers / "
                "[keys] verify_nameservers",
                Outcome.DNS_ERROR,
                RETRY_TTL_S,
            )
        case _:  # NOT_CHECKED
            detail = f": {check.detail}" if check.detail else ""
            return Finding(
                fid,
                Status.WARN,
                f"the key record {name} was not checked{detail}",
                "run `reputable check` with DNS reachable",
                ttl_s=RETRY_TTL_S,
            )


def key_record(check: RecordCheck) -> KeyRecord:
    """What a record check means for the signatures: whether receivers will verify them.

    A matching record verifies (under t=y too: receivers still report dkim=pass);
    a missing or other key fails every signature; an error or no check tells nothing.
    """
    match check.status:
        case DnsStatus.MATCHING:
            return KeyRecord.MATCHING
        case DnsStatus.MISSING | DnsStatus.MISMATCH:
            return KeyRecord.WRONG
        case _:
            return KeyRecord.UNKNOWN


def query_dkim_records(
    keys: Sequence[SigningKey],
    resolver: dns.resolver.Resolver,
    verify_nameservers: Sequence[Nameserver],
    timeout_s: float,
) -> list[tuple[SigningKey, RecordCheck]]:
    """Each key with the verdict on its published record (keys.dnscheck.check_key_record).

    Keys are checked at once (at most 8 at a time), each server bounded by
    `timeout_s`; never raises.
    """
    if not keys:
        return []

    def check(key: SigningKey) -> tuple[SigningKey, RecordCheck]:
        value = record_value(key.algorithm, key.private_key)
        return key, check_key_record(
            key.selector, key.domain, value, resolver, verify_nameservers, timeout_s
        )

    with ThreadPoolExecutor(max_workers=min(len(keys), _PARALLEL_KEYS)) as pool:
        return list(pool.map(check, keys))
