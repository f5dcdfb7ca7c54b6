"""The counts a report shows, built message by message, and its exit code. Pure.

`Summary.add` takes each joined message, `Summary.event` each host event; the
summary holds counters and one group per distinct receiver reply, never the
messages themselves. `as_json` is the documented schema::

    {"window": {"from", "until"},
     "messages": {"total", "signed", "unsigned": {REASON: N}, "actions": {ACTION: N}},
     "deliveries": {RECEIVER: {"sent", "deferred", "bounced"}},
     "signals": [{"receiver", "code", "class", "count", "first", "last", "example", "fix"}],
     "host_events": [{"time", "event", "check", "detail"}],
     "inbound": {"messages", "dkim": {RESULT: N}, "spf": {...}, "dmarc": {...}, "arc": {...}}}

``inbound`` counts the inbound messages (``source=external``) whose line
carries the results of their verification (``dkim_in``, ``spf_in``,
``dmarc_in``, ``arc_in``), and each result's messages; lines written without
them (outbound mail, inbound mail not verified) are not among them.

Signals come worst first: a blocked IP before a missing PTR before a rate
limit, bounces before deferrals, then by count. A reply that is no signal
but a 4xx/5xx all the same is kept too, grouped by its text, as class
``other``: nothing a receiver said is dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from reputable.report.join import INBOUND_FIELDS, Delivery, Message
from reputable.report.signals import (
    Receiver,
    SignalClass,
    classify,
    normalized,
    receiver_of,
    status_code,
)

# Worst first: what blocks all mail, then what fails authentication, then what slows it.
_CLASS_ORDER = (
    SignalClass.REPUTATION,
    SignalClass.DNSBL,
    SignalClass.PTR,
    SignalClass.AUTH,
    SignalClass.DMARC,
    SignalClass.SPF,
    SignalClass.DKIM,
    SignalClass.RATE,
    SignalClass.CONTENT,
    SignalClass.OTHER,
)
_FAILED = ("deferred", "bounced", "expired")
# Our log's host and key events (README, "Logs"): the report's timeline.
HOST_EVENTS = frozenset(
    {
        "host_fail",
        "host_warn",
        "host_ok",
        "key_weak",
        "key_missing",
        "key_pending",
        "key_active",
        "key_retiring",
        "key_retired",
        "activation_failed",
        "keys_reload_failed",
        "reload_failed",
        "no_domain",
    }
)
GATE_STOPPED = frozenset({"hold", "reject", "tempfail"})
# An inbound line's fields and the method each counts for: "dkim_in" -> "dkim".
INBOUND_METHODS = tuple((name, name.removesuffix("_in")) for name in INBOUND_FIELDS)


@dataclass(slots=True)
class SignalGroup:
    receiver: Receiver
    code: str
    klass: SignalClass
    cause: str
    fix: str
    example: str
    first: datetime | None
    last: datetime | None
    count: int = 0
    bounced: int = 0

    def sort_key(self) -> tuple[int, int, int]:
        return (_CLASS_ORDER.index(self.klass), 0 if self.bounced else 1, -self.count)


@dataclass(slots=True)
class Summary:
    first: datetime | None = None
    last: datetime | None = None
    total: int = 0
    signed: int = 0
    unsigned: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    deliveries: dict[Receiver, Counter[str]] = field(default_factory=dict)
    groups: dict[tuple[Receiver, str, SignalClass, str], SignalGroup] = field(default_factory=dict)
    host_events: list[dict[str, str]] = field(default_factory=list)
    gate_stopped: int = 0  # held, rejected or tempfailed by reputable's gate
    flagged: int = 0
    inbound: int = 0  # inbound messages whose line carries their verification's results
    # method (dkim, spf, dmarc, arc) -> result (pass, fail, ...) -> messages
    inbound_results: dict[str, Counter[str]] = field(
        default_factory=lambda: {method: Counter() for _, method in INBOUND_METHODS}
    )

    def add(self, message: Message) -> None:
        self.total += 1
        self._seen(message.first_seen)
        verdict = message.verdict
        action = verdict.get("action", "") or message.milter_action
        if action:
            self.actions[action] += 1
        inbound = verdict.get("source") == "external"
        if inbound:
            pass  # received mail refused by DMARC enforcement says nothing of this host's mail
        elif action in GATE_STOPPED or message.milter_action in ("hold", "reject"):
            self.gate_stopped += 1
        elif action == "flag":
            self.flagged += 1
        dkim = verdict.get("dkim", "")
        if dkim and dkim != "none":
            self.signed += 1
        else:
            self.unsigned[verdict.get("reason", "") or "no_reputable_line"] += 1
        if inbound:
            self._inbound(verdict)
        for delivery in message.deliveries:
            self._delivery(delivery)

    def _inbound(self, verdict: dict[str, str]) -> None:
        """An inbound message's results, when its line has them (an older version's has not)."""
        counted = False
        for name, method in INBOUND_METHODS:
            result = verdict.get(name)
            if result:
                self.inbound_results[method][result] += 1
                counted = True
        if counted:
            self.inbound += 1

    def event(self, time: datetime | None, fields: dict[str, str]) -> None:
        if fields.get("event", "") not in HOST_EVENTS:
            return
        self._seen(time)
        self.host_events.append(
            {
                "time": time.isoformat() if time is not None else fields.get("ts", ""),
                "event": fields["event"],
                "check": fields.get("check", ""),
                "detail": fields.get("detail", ""),
            }
        )

    def _seen(self, time: datetime | None) -> None:
        if time is None:
            return
        if self.first is None or time < self.first:
            self.first = time
        if self.last is None or time > self.last:
            self.last = time

    def _delivery(self, delivery: Delivery) -> None:
        self._seen(delivery.time)
        receiver = receiver_of(delivery.relay, delivery.reply)
        counts = self.deliveries.setdefault(receiver, Counter())
        counts["bounced" if delivery.status == "expired" else delivery.status] += 1
        if delivery.status not in _FAILED or not delivery.reply:
            return
        signal = classify(delivery.reply, receiver)
        if signal is not None:
            key = (receiver, signal.code, signal.klass, "")
            fix, klass, code, cause = signal.fix, signal.klass, signal.code, signal.cause
        else:
            text = normalized(delivery.reply.partition(" said: ")[2] or delivery.reply)
            code, klass, fix = status_code(delivery.reply), SignalClass.OTHER, ""
            cause = "a reply that names no known cause"
            key = (receiver, code, klass, text)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = SignalGroup(
                receiver, code, klass, cause, fix, delivery.reply, delivery.time, delivery.time
            )
        group.count += 1
        group.bounced += delivery.status != "deferred"
        if delivery.time is not None:
            group.first = min(group.first or delivery.time, delivery.time)
            group.last = max(group.last or delivery.time, delivery.time)

    def signals(self) -> list[SignalGroup]:
        return sorted(self.groups.values(), key=SignalGroup.sort_key)

    def exit_code(self) -> int:
        """0: nothing wrong; 1: warnings (flags, deferrals with a signal); 2: mail held or
        refused by the gate, bounced for a signal, or a host check failed."""
        signals = [g for g in self.groups.values() if g.klass is not SignalClass.OTHER]
        if (
            self.gate_stopped
            or any(g.bounced for g in signals)
            or any(e["event"] == "host_fail" for e in self.host_events)
        ):
            return 2
        if self.flagged or signals:
            return 1
        return 0

    def as_json(self) -> dict[str, object]:
        return {
            "window": {
                "from": self.first.isoformat() if self.first else None,
                "until": self.last.isoformat() if self.last else None,
            },
            "messages": {
                "total": self.total,
                "signed": self.signed,
                "unsigned": dict(self.unsigned),
                "actions": dict(self.actions),
            },
            "deliveries": {
                str(receiver): {k: counts[k] for k in ("sent", "deferred", "bounced")}
                for receiver, counts in self.deliveries.items()
            },
            "signals": [
                {
                    "receiver": str(g.receiver),
                    "code": g.code,
                    "class": str(g.klass),
                    "count": g.count,
                    "first": g.first.isoformat() if g.first else None,
                    "last": g.last.isoformat() if g.last else None,
                    "example": g.example,
                    "fix": g.fix,
                }
                for g in self.signals()
            ],
            "host_events": list(self.host_events),
            "inbound": {
                "messages": self.inbound,
                **{
                    method: dict(counts.most_common())
                    for method, counts in self.inbound_results.items()
                },
            },
        }
