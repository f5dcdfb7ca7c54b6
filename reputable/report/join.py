"""Our log lines and Postfix's, joined by queue id into one record per message. Pure, streaming.

A message is open from its first line until Postfix is done with it: qmgr's
``removed``, or a milter's reject or discard (the message never reaches the
queue). Our verdict is written before Postfix queues the message, but two
files merged by time (Postfix's stamps have whole seconds, ours
milliseconds) may put it after ``removed``: a message done without our line
waits `GRACE` of log time for it. Only open messages are held, so memory follows the mail in flight,
not the size of the log. What is still open at the end (held mail, mail
still deferred, a log that ends mid-delivery) is handed out by `finish`.

Our own lines are read in either format (`[log] format`): logfmt, with or
without ``ts=``, and JSON; the host events (``host_fail``, ``key_weak`` ...)
carry no queue id and are handed out as they come.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from reputable.log import parse_logfmt
from reputable.report.logline import LogLine
from reputable.report.postfix_lines import Kind, PostfixEvent, parse_postfix

GRACE = timedelta(seconds=5)
# Looked up once: an enum's attribute costs a lookup through its class, on every line.
_MILTER, _DELIVERY, _REMOVED = Kind.MILTER, Kind.DELIVERY, Kind.REMOVED


class Delivery(NamedTuple):
    recipient: str
    relay: str
    status: str  # sent, deferred, bounced, expired
    dsn: str
    reply: str
    time: datetime | None


@dataclass(slots=True)
class Message:
    queue_id: str
    first_seen: datetime | None = None
    verdict: dict[str, str] = field(default_factory=dict)  # our line: action, dkim, reason...
    milter_action: str = ""  # hold, reject or discard, as Postfix's cleanup logged it
    milter_reply: str = ""
    deliveries: list[Delivery] = field(default_factory=list)


def may_matter(text: str) -> bool:
    """Whether a raw line may say anything the joiner keeps: our lines, and Postfix's milter
    verdicts, deliveries, notices and removals. The rest of a mail log (connections, message
    ids, queueing, warnings, other programs), most of its lines, is passed over unparsed."""
    return bool(lines_that_matter([text]))


def lines_that_matter(lines: list[str]) -> list[str]:
    """`may_matter` over a batch of lines, in one call (a call per line costs as much)."""
    return [
        text
        for text in lines
        if "logger" in text
        or "status=" in text
        or ": removed" in text
        or "milter-" in text
        or "notification: " in text
    ]


def our_fields(line: LogLine) -> dict[str, str] | None:
    """The fields of one of our log lines, or None when the line is not ours."""
    text = line.text.lstrip()
    if text.startswith("<") and ">" in text[:4]:  # the journal's priority prefix
        text = text.partition(">")[2]
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or "logger" not in data:
            return None
        return {str(k): str(v) for k, v in data.items()}
    if not (text.startswith("level=") or text.startswith("ts=")) or " logger=" not in text:
        return None
    if " queue_id=" in text and '"' not in text and "\\" not in text:
        return _verdict(text)
    return parse_logfmt(text)


# What a message's line tells the report (README, "Logs"); the rest of it is not read.
VERDICT_FIELDS = ("queue_id", "action", "source", "dkim", "reason", "checks")
# What the line of an inbound message (source=external) adds once verified: the results of
# the Authentication-Results header, one word each. Looked for on those lines only.
INBOUND_FIELDS = ("dkim_in", "spf_in", "dmarc_in", "arc_in")


def _verdict(text: str, names: tuple[str, ...] = VERDICT_FIELDS) -> dict[str, str]:
    """The `VERDICT_FIELDS` of one of our message lines with nothing quoted in it: found by
    name, not by reading every field (a message line has a dozen). The line of an inbound
    message is read for its `INBOUND_FIELDS` too, when it has any: other lines cost nothing
    more than a look at their source."""
    fields = {}
    for name in names:
        at = text.find(f" {name}=")
        if at != -1:
            start = at + len(name) + 2
            end = text.find(" ", start)
            fields[name] = text[start:] if end == -1 else text[start:end]
    if fields.get("source") == "external" and "_in=" in text:
        fields.update(_verdict(text, INBOUND_FIELDS))  # no source among them: read once
    return fields


class Joiner:
    """Feed it lines in the order they were written; it hands out each message once done."""

    def __init__(
        self,
        on_message: Callable[[Message], None],
        on_event: Callable[[datetime | None, dict[str, str]], None],
    ) -> None:
        self.open: dict[str, Message] = {}
        # Done but for our line, in the order they were done: queue id -> when to stop waiting.
        self._closing: dict[str, datetime] = {}
        self._on_message = on_message
        self._on_event = on_event

    def feed(self, line: LogLine) -> None:
        if self._closing and line.time is not None:
            self._close_until(line.time)
        if not line.program.startswith("postfix"):  # ours, or of no program said
            ours = our_fields(line)
            if ours is not None:
                self._ours(line.time, ours)
                return
        event = parse_postfix(line.program, line.text)
        if event is not None:
            self._postfix(line.time, event)

    def finish(self) -> None:
        """The end of the input: every message still open is handed out as it stands."""
        for message in self.open.values():
            self._on_message(message)
        self.open.clear()
        self._closing.clear()

    def _close_until(self, time: datetime) -> None:
        while self._closing:  # the first waited longest: usually nothing to do, in O(1)
            queue_id, deadline = next(iter(self._closing.items()))
            if deadline >= time:
                return
            del self._closing[queue_id]
            self._hand_out(queue_id)

    def _message(self, queue_id: str, time: datetime | None) -> Message:
        message = self.open.get(queue_id)
        if message is None:
            message = self.open[queue_id] = Message(queue_id, time)
        return message

    def _ours(self, time: datetime | None, fields: dict[str, str]) -> None:
        queue_id = fields.get("queue_id", "")
        if not queue_id or queue_id == "NOQUEUE":
            self._on_event(time, fields)
            return
        self._message(queue_id, time).verdict = fields
        if self._closing.pop(queue_id, None) is not None:  # Postfix was done already
            self._hand_out(queue_id)

    def _postfix(self, time: datetime | None, event: PostfixEvent) -> None:
        message = self.open.get(event.queue_id) or self._message(event.queue_id, time)
        kind = event.kind
        if kind is _MILTER:
            message.milter_action = event.fields.get("action", "")
            message.milter_reply = event.reply
            if message.milter_action in ("reject", "discard"):
                self._done(message, time)
        elif kind is _DELIVERY:
            get = event.fields.get
            message.deliveries.append(
                Delivery(
                    get("to", ""),
                    get("relay", ""),
                    get("status", ""),
                    get("dsn", ""),
                    event.reply,
                    time,
                )
            )
        elif kind is _REMOVED:
            self._done(message, time)

    def _done(self, message: Message, time: datetime | None) -> None:
        if not message.verdict and time is not None:  # our line may still come: wait for it
            self._closing[message.queue_id] = time + GRACE
        else:
            self._hand_out(message.queue_id)

    def _hand_out(self, queue_id: str) -> None:
        self._on_message(self.open.pop(queue_id))
