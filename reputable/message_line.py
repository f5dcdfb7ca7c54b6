"""The one log line of a decided message, and its metrics: the same fields, in the same order,
whether the milter, Exim's gate or the `sign` filter decided.

The fields are the monitoring interface (README, "Logs"): queue_id, action,
source, client, from_domain, dkim, reason, then the gate's (spf, ptr, dnsbl,
dmarc, checks, would_be, detail), the received mail's (dkim_in, spf_in,
dmarc_in, arc_in), and ms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reputable.gate import GateDecision, summary_fields
from reputable.log import Field, emit
from reputable.policy import Source, Verdict
from reputable.reputation import MessageFacts

if TYPE_CHECKING:
    from reputable.inbound.check import InboundReport
    from reputable.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Decided:
    """What was decided for one message, and what it was decided from."""

    queue_id: str | None  # None where there is none (sign)
    action: str
    source: Source
    verdict: Verdict | None  # None: decided before the From was read (a header overflow)
    client: object = None  # the client's IP, "local", or None where there is none (sign)
    reason: str | None = None  # instead of the verdict's
    facts: MessageFacts | None = None
    gate: GateDecision | None = None
    inbound: InboundReport | None = None
    detail: str | None = None


def gate_fields(facts: MessageFacts, gate: GateDecision) -> dict[Field, object]:
    words = summary_fields(facts.findings)
    return {
        Field.SPF: facts.spf,
        Field.PTR: words.get("ptr", "-") if facts.host_ready else "unknown",
        Field.DNSBL: words.get("dnsbl", "-") if facts.host_ready else "unknown",
        Field.DMARC: words.get("dmarc", "-"),
        Field.CHECKS: gate.failed_checks or None,
        Field.WOULD_BE: gate.would_be,
        Field.DETAIL: gate.detail() or None,  # what a flag header no longer tells recipients
    }


def record(log: logging.Logger, metrics: Metrics | None, decided: Decided, spent_s: float) -> None:
    """Write the message's line and count it."""
    verdict = decided.verdict
    reason = decided.reason or (verdict.reason if verdict else None)
    keys = verdict.keys if verdict else ()
    fields: dict[Field, object] = {}
    if decided.queue_id is not None:
        fields[Field.QUEUE_ID] = decided.queue_id
    fields[Field.ACTION] = decided.action
    fields[Field.SOURCE] = decided.source
    if decided.client is not None:
        fields[Field.CLIENT] = decided.client
    fields[Field.FROM_DOMAIN] = (verdict.from_domain if verdict else None) or "-"
    fields[Field.DKIM] = ",".join(k.label for k in keys) or "none"
    fields[Field.REASON] = reason
    if decided.facts is not None and decided.gate is not None:
        fields.update(gate_fields(decided.facts, decided.gate))
    if decided.inbound is not None:
        fields.update(decided.inbound.log_fields())
    if decided.detail is not None:
        fields[Field.DETAIL] = decided.detail
    fields[Field.MS] = f"{spent_s * 1000:.2f}"
    emit(log, logging.INFO, fields)
    if metrics is not None:
        failed = decided.gate.findings if decided.gate is not None else ()
        metrics.message(decided.action, decided.source.value, reason, keys, failed, spent_s)
        if decided.inbound is not None:
            metrics.inbound(decided.inbound.results())
