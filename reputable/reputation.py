"""The reputation gate's engine: the host snapshot, plus SPF and DMARC per message with TTL caches. I/O.

Host facts come from the background snapshot (no DNS on the message path);
SPF results are cached per (sending IP, domain) and DMARC lookups per From
domain, each for its record's TTL, so a domain costs one bounded lookup the
first time it is seen and none after, until the TTL runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from reputable.checks.dmarc import DmarcLookup, interpret_dmarc, org_domain_of, query_dmarc
from reputable.checks.dnsroot import mark_untrusted
from reputable.checks.findings import Finding
from reputable.checks.spf import SpfEvaluation, SpfResult, all_pass, interpret_spf, query_spf
from reputable.host import sending_identity
from reputable.log import Field, emit, logger
from reputable.resolver import build_dnsbl_resolver, build_resolver
from reputable.runtime import RuntimeHolder
from reputable.signing.signature import SigningKey
from reputable.snapshot import HostSnapshot, Refresher, collect_host_facts

_log = logger("checks")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
MIN_TTL_S = 30
MAX_TTL_S = 3600
# Worst first: the message's spf= field shows the worst result over the sending IPs.
_SPF_ORDER = (
    SpfResult.FAIL,
    SpfResult.PERMERROR,
    SpfResult.SOFTFAIL,
    SpfResult.TEMPERROR,
    SpfResult.NEUTRAL,
    SpfResult.NONE,
    SpfResult.PASS,
)


class WouldBlock(BaseException):
    """A cache miss in a thread that must not wait for DNS (the milter's event loop).

    A BaseException, so that the message boundary, which turns every Exception into
    a temporary failure, lets it through to the event loop; that runs the callback
    again on a worker thread, where the lookup is allowed to wait. Its argument is
    the domain looked up (the lookup pool queues the callback by it).
    """

    @property
    def domain(self) -> str:
        return str(self.args[0]) if self.args else ""


_thread = threading.local()


def forbid_waiting(forbidden: bool = True) -> None:
    """From now on, a cache miss in this thread raises WouldBlock instead of looking up."""
    _thread.no_wait = forbidden


class TtlCache(Generic[K, V]):
    """A small thread-safe cache whose entries live for their DNS TTL (bounded both ways).

    A key being loaded is loaded once: other threads asking for it meanwhile wait for
    that load (itself bounded by [dns] timeout) instead of sending the same queries.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, domain_of: Callable[[K], str] = str
    ) -> None:
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, Future[V]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._domain_of = domain_of  # the domain a key is about, for WouldBlock

    def get_or_load(self, key: K, load: Callable[[], tuple[V, int]]) -> V:
        now = self._clock()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        if getattr(_thread, "no_wait", False):
            raise WouldBlock(self._domain_of(key))
        with self._lock:
            loading = self._loading.get(key)
            if loading is None:
                pending: Future[V] = Future()
                self._loading[key] = pending
        if loading is not None:
            return loading.result()  # the same lookup, under way in another thread
        try:
            value, ttl = load()
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._loading[key]
            self._entries[key] = (now + min(max(ttl, MIN_TTL_S), MAX_TTL_S), value)
            if len(self._entries) > 10_000:  # many one-off domains: forget the expired
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
        pending.set_result(value)
        return value

    def clear(self) -> None:
        """Forget every entry (a load under way still finishes and is kept)."""
        with self._lock:
            self._entries = {}


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the gate saw for one message: its findings and the log's one-word summaries."""

    findings: tuple[Finding, ...]
    spf: str  # the worst SPF result over the sending IPs, or "-" when none was evaluated
    host_ready: bool


class Reputation:
    """Owns the refresher thread and the caches; rebuilt whole when the configuration is reloaded."""

    def __init__(self, holder: RuntimeHolder) -> None:
        config = holder.current.config
        self.config = config
        self.identity = sending_identity(config)
        self.resolver = build_resolver(config.dns)
        self.dnsbl_resolver = build_dnsbl_resolver(config.dns)
        self.stopping = threading.Event()
        self.spf_cache: TtlCache[tuple[str, str], SpfEvaluation] = TtlCache(
            domain_of=lambda key: key[1]
        )
        self.dmarc_cache: TtlCache[str, DmarcLookup] = TtlCache()
        self.org_cache: TtlCache[str, str] = TtlCache()
        self.holder = holder
        self.refresher = Refresher(
            self.build_snapshot,
            self.stopping,
            lambda: self.config.checks.refresh_s,
            HostSnapshot(self.identity),
        )

    def start(self) -> None:
        fields: dict[Field, object] = {
            Field.EVENT: "host",
            Field.IPS: ",".join(str(ip) for ip in self.identity.ips) or "none",
            Field.HELO: self.identity.helo,
            Field.SOURCE: self.identity.source,
        }
        emit(_log, logging.INFO, fields)
        self.refresher.start()

    def stop(self) -> None:
        self.stopping.set()

    def build_snapshot(self) -> HostSnapshot:
        runtime = self.holder.current
        keys = [k for ks in runtime.keyring.by_domain.values() for k in ks]
        facts = collect_host_facts(
            self.config, self.identity, keys, runtime.domains, self.resolver, self.dnsbl_resolver
        )
        if self.refresher.current.trust.records and not facts.trust.records:
            # The resolver sees the root again: what it said before is no SPF or DMARC fact.
            for cache in (self.spf_cache, self.dmarc_cache, self.org_cache):
                cache.clear()
        return HostSnapshot(
            self.identity, facts.findings, time.time(), facts.key_records, facts.trust
        )

    def org_domain(self, domain: str) -> str:
        return self.org_cache.get_or_load(
            domain,
            lambda: (org_domain_of(domain, self.resolver, self.config.dns.timeout_s), MAX_TTL_S),
        )

    def spf(self, ip: str, domain: str) -> SpfEvaluation:
        def load() -> tuple[SpfEvaluation, int]:
            evaluation = query_spf(
                ip, domain, self.identity.helo, self.resolver, self.config.dns.timeout_s
            )
            return evaluation, evaluation.ttl_s

        return self.spf_cache.get_or_load((ip, domain), load)

    def dmarc(self, from_domain: str) -> DmarcLookup:
        def load() -> tuple[DmarcLookup, int]:
            lookup = query_dmarc(from_domain, self.resolver, self.config.dns.timeout_s)
            return lookup, lookup.ttl_s

        return self.dmarc_cache.get_or_load(from_domain, load)

    def facts(
        self, mail_from_domain: str, from_domain: str | None, keys: Sequence[SigningKey]
    ) -> MessageFacts:
        """Everything the gate needs about one outbound message."""
        snapshot = self.refresher.current
        findings = snapshot.for_message(keys)
        spf_domain = (
            mail_from_domain or self.identity.helo
        )  # a null sender is checked by its HELO (RFC 7208 §2.3)
        evaluations = [self.spf(str(ip), spf_domain) for ip in self.identity.ips]
        identity = "mailfrom" if mail_from_domain else "helo"
        findings += [interpret_spf(e, identity) for e in evaluations]
        if from_domain is not None:
            spf_passed = all_pass(evaluations)
            # A signature counts only while its selector publishes this key (the snapshot's check).
            signatures = snapshot.signatures(keys)
            lookup = self.dmarc(from_domain)
            findings.append(
                interpret_dmarc(lookup, spf_domain, spf_passed, signatures, self.org_domain)
            )
        results = {e.result for e in evaluations}
        worst = next((r.value for r in _SPF_ORDER if r in results), "-")
        if snapshot.trust.records and evaluations:
            worst = SpfResult.TEMPERROR.value  # what that resolver said is no SPF result
        # While the resolver fails the root test, SPF and DMARC are unknown as well.
        findings = mark_untrusted(findings, snapshot.trust)
        return MessageFacts(tuple(findings), worst, snapshot.ready)
