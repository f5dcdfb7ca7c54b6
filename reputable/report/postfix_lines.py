"""What a Postfix log line says about one message, by its queue id. Pure.

Postfix writes one line per event, each after the queue id (postconf(5),
``enable_long_queue_ids``: short ids are upper-case hexadecimal; long ones
use an alphabet without vowels, a ``z`` between the time and the inode part,
so that no word such as ``warning`` reads as one):

* ``smtpd``: ``QID: client=host[ip]`` (and ``sasl_username=``);
* ``cleanup``: ``QID: message-id=<...>``, and the milters' verdicts,
  ``QID: milter-hold: END-OF-MESSAGE from host[ip]: 4.7.1 text; from=<> to=<> ...``
  and ``milter-reject`` likewise;
* ``qmgr``: ``QID: from=<a@b>, size=N, nrcpt=N (queue active)`` and ``QID: removed``;
* ``smtp`` / ``lmtp`` / ``local`` / ``virtual`` / ``error``: ``QID: to=<r@d>,
  relay=host[ip]:port, delay=..., dsn=X.Y.Z, status=sent|deferred|bounced (reply)``;
* ``bounce``: ``QID: sender non-delivery notification: QID2``.

Lines of other programs, or without a queue id, are None.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

_QUEUE_ID = re.compile(
    r"([0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+): "
)
# A delivery as Postfix writes it (smtp/delivery_status.c): the fields the report reads, and
# the reply, everything in the parentheses after the status word (which may hold parentheses).
_DELIVERY = re.compile(
    r"to=<(?P<to>[^>]*)>, (?:orig_to=<[^>]*>, )?relay=(?P<relay>[^,]*), (?:[a-z_]+=[^,]*, )*?"
    r"dsn=(?P<dsn>[^,]*), status=(?P<status>[a-z]+)(?: \((?P<reply>.*)\))?"
)
_MILTER = re.compile(
    r"milter-(?P<kind>hold|reject|discard): (?P<stage>[A-Z-]+) from (?P<client>\S+): "
    r"(?P<reply>.*?)(?:; from=<(?P<sender>[^>]*)>)?(?: to=<(?P<rcpt>[^>]*)>)?(?: proto=.*)?"
)
_FIELD = re.compile(r"(?P<key>[a-z_]+)=(?P<value><[^>]*>|[^,]*)(?:, |$)")
_DELIVERY_AGENTS = frozenset(
    {"smtp", "lmtp", "local", "virtual", "error", "retry", "discard", "pipe"}
)


class Kind(StrEnum):
    CLIENT = "client"  # smtpd accepted the message from a client
    MESSAGE_ID = "message_id"
    MILTER = "milter"  # a milter held, rejected or discarded it
    QUEUED = "queued"  # qmgr: from, size, recipients
    DELIVERY = "delivery"  # one recipient's delivery attempt
    REMOVED = "removed"  # gone from the queue: no more lines for it
    BOUNCE = "bounce"  # a non-delivery notification was queued


_KIND_REMOVED, _KIND_DELIVERY = Kind.REMOVED, Kind.DELIVERY  # looked up once, not per line


class PostfixEvent(NamedTuple):
    queue_id: str
    kind: Kind
    fields: dict[str, str]  # to, relay, dsn, status, from, ...
    reply: str = ""  # the remote server's words (deliveries), the milter's reply


def parse_postfix(program: str, text: str) -> PostfixEvent | None:
    """The event a Postfix line reports about one queued message, or None.

    Postfix's programs are ``postfix/NAME`` (``postfix-out/NAME`` for a second
    instance); "" (``journalctl -o cat`` wrote no program) may be any."""
    if program and not (program.startswith("postfix") and "/" in program):
        return None
    found = _QUEUE_ID.match(text)
    if found is None:
        return None
    qid, rest = found[1], text[found.end() :]
    if rest == "removed":
        return PostfixEvent(qid, _KIND_REMOVED, {})
    daemon = program.rpartition("/")[2]  # the daemon without the instance: smtp
    if rest.startswith("milter-"):
        return _milter(qid, rest)
    if rest.startswith("client="):
        return PostfixEvent(qid, Kind.CLIENT, _fields(rest))
    if rest.startswith("message-id="):
        return PostfixEvent(qid, Kind.MESSAGE_ID, {"message-id": rest[len("message-id=") :]})
    if rest.startswith("from=") and (daemon == "qmgr" or not program):
        return PostfixEvent(qid, Kind.QUEUED, _fields(rest.partition(" (")[0]))
    if rest.startswith("to=") and "status=" in rest and (daemon in _DELIVERY_AGENTS or not program):
        return _delivery(qid, rest)
    if "non-delivery notification: " in rest or "delivery status notification: " in rest:
        return PostfixEvent(qid, Kind.BOUNCE, {"notice": rest.rpartition(": ")[2]})
    return None


def _fields(text: str) -> dict[str, str]:
    """``key=value, key=<value>, ...``: split at ", ", unless a part is not that simple (an
    address holding ", ", text between the fields); then by the pattern."""
    values: dict[str, str] = {}
    for part in text.split(", "):
        key, equals, value = part.partition("=")
        if not equals or not key.islower() or (value[:1] == "<") != (value[-1:] == ">"):
            return {m["key"]: m["value"].strip("<>") for m in _FIELD.finditer(text)}
        values[key] = value.strip("<>")
    return values


def _delivery(qid: str, rest: str) -> PostfixEvent:
    """``to=<..>, relay=.., dsn=.., status=deferred (reply)``: the reply is everything in the
    parentheses after the status word, which may itself hold parentheses."""
    found = _DELIVERY.fullmatch(rest)
    if found is not None:
        fields = found.groupdict()
        return PostfixEvent(qid, _KIND_DELIVERY, fields, fields.pop("reply") or "")
    head, reply = rest, ""
    status_at = rest.find("status=")
    opening = rest.find(" (", status_at)
    if opening != -1 and rest.endswith(")"):
        head, reply = rest[:opening], rest[opening + 2 : -1]
    return PostfixEvent(qid, Kind.DELIVERY, _fields(head), reply)


def _milter(qid: str, rest: str) -> PostfixEvent:
    found = _MILTER.fullmatch(rest)
    if found is None:
        kind = rest[len("milter-") :].partition(":")[0]
        return PostfixEvent(qid, Kind.MILTER, {"action": kind}, rest.partition(": ")[2])
    values = {"action": found["kind"], "stage": found["stage"], "client": found["client"]}
    if found["sender"] is not None:
        values["from"] = found["sender"]
    if found["rcpt"] is not None:
        values["to"] = found["rcpt"]
    return PostfixEvent(qid, Kind.MILTER, values, found["reply"])
