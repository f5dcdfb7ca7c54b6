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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dns.resolver

from reputable.checks.dkimdns import interpret_dkim_record, query_dkim_records
from reputable.checks.dnsbl import interpret_dnsbl, interpret_static_ip, query_dnsbl
from reputable.checks.findings import Finding, Status
from reputable.checks.ptr import interpret_ptr, query_ptr
from reputable.config import Config
from reputable.host import SendingIdentity
from reputable.log import Field, emit, logger
from reputable.signing.signature import SigningKey

_log = logger("checks")
MAX_INTERVAL_S = 3600


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    identity: SendingIdentity
    findings: tuple[Finding, ...] = ()
    taken_at: float = 0.0  # time.time() of the refresh; 0: not yet taken

    @property
    def ready(self) -> bool:
        return self.taken_at > 0

    def for_message(self, keys: Sequence[SigningKey]) -> list[Finding]:
        """Host findings that bear on a message: every IP and blocklist one, and its keys' records."""
        wanted = {f"dkim.{k.selector}.{k.domain}" for k in keys}
        return [f for f in self.findings if not f.id.startswith("dkim.") or f.id in wanted]


def collect_host_findings(
    config: Config,
    identity: SendingIdentity,
    keys: Sequence[SigningKey],
    domains: Sequence[str],
    resolver: dns.resolver.Resolver,
    dnsbl_resolver: dns.resolver.Resolver,
) -> list[Finding]:
    """Ask DNS everything the snapshot holds (each query bounded by [dns] timeout)."""
    timeout = config.dns.timeout_s
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
    return findings


def next_interval(findings: Sequence[Finding], refresh_s: int) -> float:
    """At most every refresh_s; later while every answer is still fresh by its TTL."""
    shortest = min((f.ttl_s for f in findings), default=refresh_s)
    return float(min(max(refresh_s, shortest), MAX_INTERVAL_S))


def state_changes(old: Sequence[Finding], new: Sequence[Finding]) -> list[Finding]:
    """Findings whose status changed (or that are new and not OK): one log line each."""
    before = {f.id: f.status for f in old}
    return [f for f in new if before.get(f.id, Status.OK) is not f.status]


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
