"""Host facts, refreshed in the background into an immutable snapshot that messages read in O(1). I/O.

PTR/FCrDNS, blocklist status and the published DKIM records do not change
per message, so no message waits for DNS to learn them: a refresher thread
asks, builds a new `HostSnapshot`, and swaps it in whole. It refreshes at
most every `[checks] refresh`, later when the answers' TTLs allow (an hour
at the most), and logs one line per change of host state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import dns.resolver

from reputable.checks.dkimdns import interpret_dkim_record, key_record, query_dkim_records
from reputable.checks.dmarc import DkimSignature, KeyRecord
from reputable.checks.dnsbl import interpret_dnsbl, interpret_static_ip, query_dnsbl
from reputable.checks.dnsroot import DnsTrust, mark_untrusted, probe_resolvers
from reputable.checks.findings import Finding, Status
from reputable.checks.ptr import interpret_ptr, query_ptr
from reputable.config import Config
from reputable.host import SendingIdentity
from reputable.log import Field, emit, logger
from reputable.signing.signature import SigningKey

_log = logger("checks")
MAX_INTERVAL_S = 3600


KeyRecords = Mapping[tuple[str, str], KeyRecord]  # (selector, domain) -> its published record


def _no_records() -> KeyRecords:
    return MappingProxyType({})


def signatures_of(keys: Sequence[SigningKey], records: KeyRecords) -> list[DkimSignature]:
    """The signatures `keys` make, each with what its selector publishes (unknown if unchecked)."""
    return [
        DkimSignature(k.domain, k.selector, records.get((k.selector, k.domain), KeyRecord.UNKNOWN))
        for k in keys
    ]


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What one refresh learnt: the findings, and whether each key's record is the key."""

    findings: tuple[Finding, ...]
    key_records: KeyRecords = field(default_factory=_no_records)
    trust: DnsTrust = field(default_factory=DnsTrust)  # which resolvers fail the root test


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    identity: SendingIdentity
    findings: tuple[Finding, ...] = ()
    taken_at: float = 0.0  # time.time() of the refresh; 0: not yet taken
    key_records: KeyRecords = field(default_factory=_no_records)
    trust: DnsTrust = field(default_factory=DnsTrust)  # while it fails the root test: unknown

    @property
    def ready(self) -> bool:
        return self.taken_at > 0

    def for_message(self, keys: Sequence[SigningKey]) -> list[Finding]:
        """Host findings that bear on a message: every IP and blocklist one, and its keys' records."""
        wanted = {f"dkim.{k.selector}.{k.domain}" for k in keys}
        return [f for f in self.findings if not f.id.startswith("dkim.") or f.id in wanted]

    def signatures(self, keys: Sequence[SigningKey]) -> list[DkimSignature]:
        """The DKIM signatures `keys` make, as DMARC counts them (unknown before the first refresh)."""
        return signatures_of(keys, self.key_records)


def collect_host_facts(
    config: Config,
    identity: SendingIdentity,
    keys: Sequence[SigningKey],
    domains: Sequence[str],
    resolver: dns.resolver.Resolver,
    dnsbl_resolver: dns.resolver.Resolver,
) -> HostFacts:
    """Ask DNS everything the snapshot holds (each query bounded by [dns] timeout).

    The dns row(s) come first: the root test of each resolver. The rows that
    rest on a resolver failing it are unknown (dnsroot.mark_untrusted).
    """
    timeout = config.dns.timeout_s
    rows, trust = probe_resolvers(config, resolver, dnsbl_resolver)
    findings: list[Finding] = []
    for ip in identity.ips:
        findings.extend(
            interpret_ptr(query_ptr(ip, identity.helo, resolver, timeout), identity.helo)
        )
    ips = [str(ip) for ip in identity.ips]
    answers = query_dnsbl(ips, config.checks.dnsbl, dnsbl_resolver, timeout)
    if config.checks.dnsbl_domains:
        answers += query_dnsbl(list(domains), config.checks.dnsbl_domains, dnsbl_resolver, timeout)
    findings.extend(interpret_dnsbl(a) for a in answers)
    findings.extend(interpret_static_ip(ip, [a for a in answers if a.target == ip]) for ip in ips)
    records = query_dkim_records(keys, resolver, config.keys.verify_nameservers, timeout)
    findings.extend(interpret_dkim_record(k.selector, k.domain, check) for k, check in records)
    states = {(k.selector, k.domain): key_record(check) for k, check in records}
    if trust.records and trust.dkim_by_resolver:
        states = {}  # what an untrusted resolver said of the records is not known
    marked = rows + mark_untrusted(findings, trust)
    return HostFacts(tuple(marked), MappingProxyType(states), trust)


def next_interval(findings: Sequence[Finding], refresh_s: int) -> float:
    """At most every refresh_s; later while every answer is still fresh by its TTL."""
    shortest = min((f.ttl_s for f in findings), default=refresh_s)
    return float(min(max(refresh_s, shortest), MAX_INTERVAL_S))


def state_changes(old: Sequence[Finding], new: Sequence[Finding]) -> list[Finding]:
    """Findings whose status changed (or that are new and not OK): one log line each.

    A row that could not be checked (unknown) is no change of state: the row
    that says why (`dns`, when the resolver cannot be trusted) is logged once,
    not every row that rests on it; a row known again is compared with OK.
    """
    before = {f.id: f.status for f in old if f.status is not Status.UNKNOWN}
    return [
        f
        for f in new
        if f.status is not Status.UNKNOWN and before.get(f.id, Status.OK) is not f.status
    ]


@dataclass
class Refresher:
    """The background thread that keeps the snapshot current."""

    build: Callable[[], HostSnapshot]
    stopping: threading.Event
    refresh_s: Callable[[], int]
    current: HostSnapshot
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.run, name="refresher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        wait = 0.0
        while not self.stopping.wait(wait):
            try:
                self.refresh()
                wait = next_interval(self.current.findings, self.refresh_s())
            except Exception:  # a failed refresh must never end the milter; retry later
                emit(_log, logging.ERROR, {Field.EVENT: "refresh_error"}, exc_info=True)
                wait = float(self.refresh_s())

    def refresh(self) -> None:
        started = time.monotonic()
        fresh = self.build()
        for finding in state_changes(self.current.findings, fresh.findings):
            fields: dict[Field, object] = {
                Field.EVENT: f"host_{finding.status.value}",
                Field.CHECK: finding.id,
                Field.DETAIL: finding.summary,
                Field.FIX: finding.fix or None,
            }
            emit(_log, logging.WARNING if finding.status is not Status.OK else logging.INFO, fields)
        first = not self.current.ready
        self.current = fresh
        elapsed_ms = f"{(time.monotonic() - started) * 1000:.0f}"
        # The first one is news (the gate now judges the host); the later ones are routine.
        level = logging.INFO if first else logging.DEBUG
        emit(_log, level, {Field.EVENT: "host_refreshed", Field.MS: elapsed_ms})
