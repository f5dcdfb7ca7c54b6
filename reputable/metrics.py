"""Prometheus metrics of the milter daemon: what it did per message, and the host's state now.

Counters and the histogram move on the message path, once per message and
cheaply (each label set's child is looked up once, then kept). The gauges
are read at scrape time from what the daemon holds at that moment: the host
checks of the gate's current snapshot, the keys of the current runtime with
their ages, whether each signing key's DNS record is that key. So they are
never stale, and nothing runs for them between scrapes.

Label values are bounded: actions, sources and reasons are our own words,
a gate failure is counted by the check's kind (``ptr``, ``dnsbl``), not by
its id, and domains and selectors are those of the key store.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from reputable import __version__
from reputable.checks.dmarc import KeyRecord
from reputable.checks.findings import Finding, Status
from reputable.signing.signature import SigningKey

if TYPE_CHECKING:
    from reputable.runtime import KeyAge, RuntimeHolder

# Milliseconds to seconds: most messages take about a millisecond inside the milter.
SECONDS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def check_kind(check_id: str) -> str:
    """A check's kind, its id's first word: ``dnsbl.zen.spamhaus.org.192.0.2.1`` -> ``dnsbl``."""
    return check_id.split(".", 1)[0]


class Metrics:
    """The registry /metrics serves, and what the message path adds to it."""

    def __init__(self, holder: RuntimeHolder) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._messages = Counter(
            "reputable_messages",
            "Messages the milter decided on, by the action taken and where they came from.",
            ["action", "source"],
            registry=self.registry,
        )
        self._unsigned = Counter(
            "reputable_unsigned",
            "Messages not signed, by the reason (see the log's reason field).",
            ["reason"],
            registry=self.registry,
        )
        self._signatures = Counter(
            "reputable_signatures",
            "DKIM signatures added, by domain, selector and algorithm.",
            ["domain", "selector", "algorithm"],
            registry=self.registry,
        )
        self._gate_failures = Counter(
            "reputable_gate_failures",
            "Messages on which a gate check failed, by the check's kind (ptr, dnsbl, spf, ...).",
            ["check"],
            registry=self.registry,
        )
        self._inbound = Counter(
            "reputable_inbound_results",
            "Received messages verified, by method (dkim, spf, dmarc, arc) and result.",
            ["method", "result"],
            registry=self.registry,
        )
        self._seconds = Histogram(
            "reputable_message_seconds",
            "Time spent inside the milter on one message.",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        build = Gauge(
            "reputable_build_info",
            "Always 1: the version running, and the Python it runs on.",
            ["version", "python"],
            registry=self.registry,
        )
        build.labels(__version__, platform.python_version()).set(1)
        self.registry.register(_StateCollector(holder))
        self._children: dict[tuple[object, ...], Counter] = {}

    def message(
        self,
        action: str,
        source: str,
        reason: str | None,
        keys: Sequence[SigningKey],
        failed: Iterable[Finding],
        seconds: float,
    ) -> None:
        """One message the milter decided on (called where its log line is written)."""
        self._child(self._messages, action, source).inc()
        if keys:
            for key in keys:
                self._child(self._signatures, key.domain, key.selector, key.algorithm.value).inc()
        else:
            self._child(self._unsigned, reason or "none").inc()
        for kind in dict.fromkeys(check_kind(f.id) for f in failed):
            self._child(self._gate_failures, kind).inc()
        self._seconds.observe(seconds)

    def inbound(self, results: Iterable[tuple[str, str]]) -> None:
        """One received message's results: (method, result) pairs, as its log line has them."""
        for method, result in results:
            self._child(self._inbound, method, result).inc()

    def exposition(self) -> bytes:
        """The text /metrics answers with."""
        return generate_latest(self.registry)

    def _child(self, parent: Counter, *labels: str) -> Counter:
        key = (id(parent), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = parent.labels(*labels)
        return child


class _StateCollector:
    """The gauges, read from the daemon's current state at each scrape."""

    def __init__(self, holder: RuntimeHolder) -> None:
        self.holder = holder

    def describe(self) -> list[Metric]:
        return list(self._families([], [], None))

    def collect(self) -> Iterator[Metric]:
        engine = self.holder.reputation
        snapshot = engine.refresher.current if engine is not None else None
        findings = list(snapshot.findings) if snapshot is not None else []
        records = dict(snapshot.key_records) if snapshot is not None else {}
        yield from self._families(findings, list(self.holder.current.keys), records)

    def _families(
        self,
        findings: Sequence[Finding],
        keys: Sequence[KeyAge],
        records: dict[tuple[str, str], KeyRecord] | None,
    ) -> Iterator[Metric]:
        checks = GaugeMetricFamily(
            "reputable_host_check_ok",
            "1 while the host check passes (ok or a warning), 0 while it fails; absent while it "
            "cannot be checked or before the first refresh.",
            labels=["check"],
        )
        for finding in findings:
            if finding.status is not Status.UNKNOWN:
                checks.add_metric([finding.id], 0.0 if finding.status is Status.FAIL else 1.0)
        yield checks
        ages = GaugeMetricFamily(
            "reputable_key_age_seconds",
            "Seconds since the key was made, by domain, selector and state "
            "(pending, active, retiring).",
            labels=["domain", "selector", "state"],
        )
        now = time.time()
        for key in keys:
            ages.add_metric([key.domain, key.selector, key.state], now - key.created.timestamp())
        yield ages
        max_age = GaugeMetricFamily(
            "reputable_key_max_age_seconds",
            "[keys] max_age: an active key older than this is due for rotation.",
            value=float(self.holder.current.config.keys.max_age_s),
        )
        yield max_age
        matching = GaugeMetricFamily(
            "reputable_key_record_ok",
            "1 while the selector's DNS record is the signing key, 0 while it is missing or "
            "another key; absent until checked.",
            labels=["domain", "selector"],
        )
        for (selector, domain), state in sorted((records or {}).items()):
            if state is not KeyRecord.UNKNOWN:
                matching.add_metric([domain, selector], 1.0 if state is KeyRecord.MATCHING else 0.0)
        yield matching
