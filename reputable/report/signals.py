"""What a receiver's reply says about our reputation or authentication: its class, cause and fix. Pure.

The table follows the receivers' own published texts:

* Gmail, "Gmail SMTP errors and codes":
  https://support.google.com/a/answer/3726730 and the sender guidelines,
  https://support.google.com/mail/answer/81126 (every Gmail reply ends in
  ``gsmtp``).
* Microsoft: Exchange Online's NDR codes, 5.7.606-5.7.649 ("Access denied,
  banned sending IP") and 4.7.650-4.7.652 (rate limited for IP reputation),
  https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online,
  the delisting portal https://sender.office.com; Outlook.com's S3140/S3150
  ("part of their network is on our block list"), its postmaster pages
  https://postmaster.live.com and the support form
  https://olcsupport.office.com.
* Yahoo, "SMTP error codes": https://senders.yahooinc.com/smtp-error-codes/
  (TSS04 unexpected volume or complaints, TSS09 and TS03 permanently deferred).
* Postfix's own reject text for a client without reverse DNS
  (``reject_unknown_reverse_client_hostname``): "Client host rejected: cannot
  find your reverse hostname".

A reply that names none of these (a full mailbox, an unknown user) is no
signal: `classify` gives None, and the report groups it by its `normalized` text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class SignalClass(StrEnum):
    PTR = "ptr"
    DNSBL = "dnsbl"
    SPF = "spf"
    DKIM = "dkim"
    DMARC = "dmarc"
    AUTH = "auth"  # unauthenticated: neither SPF nor DKIM passed
    RATE = "rate"  # too much, too fast: deferred for volume
    REPUTATION = "reputation"  # the IP or domain is blocked or distrusted
    CONTENT = "content"  # this message looked like spam
    OTHER = "other"


class Receiver(StrEnum):
    GOOGLE = "Google"
    MICROSOFT = "Microsoft"
    YAHOO = "Yahoo"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Signal:
    receiver: Receiver
    code: str  # the enhanced status code (5.7.26) or the receiver's own (S3150, TSS04)
    klass: SignalClass
    cause: str
    fix: str


@dataclass(frozen=True, slots=True)
class _Rule:
    receiver: Receiver | None  # None: any receiver
    pattern: re.Pattern[str]
    code: str  # "" : the reply's enhanced status code
    klass: SignalClass
    cause: str
    fix: str
    needle: str  # text the pattern cannot match without ("5.7.26"): a cheap test first


_LEADING_CODE = re.compile(r"\\b((?:\d|\\\.)+)")


_CHECK = "Run `reputable check` on the sending host: it names what fails and the fix."
_DELIST_MICROSOFT = (
    "Request delisting at https://sender.office.com (Exchange Online) or through "
    "https://olcsupport.office.com (Outlook.com, Hotmail); join SNDS to watch the IP. "
)


def _rule(
    receiver: Receiver | None, pattern: str, code: str, klass: SignalClass, cause: str, fix: str
) -> _Rule:
    leading = _LEADING_CODE.match(pattern)
    needle = leading[1].replace("\\.", ".") if leading else ""
    compiled = re.compile(pattern, re.IGNORECASE | re.DOTALL)
    return _Rule(receiver, compiled, code, klass, cause, fix, needle)


G, M, Y = Receiver.GOOGLE, Receiver.MICROSOFT, Receiver.YAHOO
_RULES = (
    # --- Gmail ---
    _rule(
        G,
        r"\b5\.7\.25\b",
        "",
        SignalClass.PTR,
        "Gmail: the sending IP has no PTR record, or its name does not resolve back to it",
        "Publish a PTR for the sending IP whose name resolves to that IP. " + _CHECK,
    ),
    _rule(
        G,
        r"\b5\.7\.26\b.*\bDMARC\b",
        "",
        SignalClass.DMARC,
        "Gmail: the message fails the From domain's DMARC policy",
        "Sign with a key whose record is published (DKIM aligned with From), or send from "
        "an IP the From domain's SPF allows. " + _CHECK,
    ),
    _rule(
        G,
        r"\b5\.7\.26\b.*fails? to pass SPF",
        "",
        SignalClass.SPF,
        "Gmail: the envelope sender's SPF record (-all) does not allow the sending IP",
        "Add the sending IP to the SPF record of the MAIL FROM domain. " + _CHECK,
    ),
    _rule(
        G,
        r"\b5\.7\.26\b",
        "",
        SignalClass.AUTH,
        "Gmail: the message is unauthenticated (neither SPF nor DKIM passed)",
        "Sign outbound mail (is reputable in smtpd_milters and non_smtpd_milters?) and "
        "publish SPF for the sending IP. " + _CHECK,
    ),
    _rule(
        G,
        r"\b5\.7\.27\b",
        "",
        SignalClass.SPF,
        "Gmail: the message fails SPF for the envelope sender's domain",
        "Add the sending IP to the SPF record of the MAIL FROM domain. " + _CHECK,
    ),
    _rule(
        G,
        r"\b4\.7\.28\b",
        "",
        SignalClass.RATE,
        "Gmail: an unusual rate of mail from the sending IP or domain, rate limited",
        "Send less at once and let the queue retry; check that the host is not relaying "
        "for others (an open relay, a compromised login).",
    ),
    _rule(
        G,
        r"\b[45]\.7\.(?:0|1)\b.*(?:unusual rate|rate limited).*unsolicited|"
        r"unsolicited mail originating from your IP",
        "",
        SignalClass.REPUTATION,
        "Gmail: the sending IP's reputation is low (an unusual rate of unsolicited mail)",
        "Find what sent the mail (a compromised login, a form), stop it, and let the "
        "reputation recover; watch it in Google Postmaster Tools.",
    ),
    _rule(
        G,
        r"\b4\.7\.0\b.*(?:reputation|rate limited|unusual rate)",
        "",
        SignalClass.RATE,
        "Gmail: deferred for the sending IP's low reputation or an unusual rate",
        "Send less at once and let the queue retry; watch Google Postmaster Tools.",
    ),
    _rule(
        G,
        r"\b5\.7\.1\b.*(?:likely unsolicited|unsolicited mail)",
        "",
        SignalClass.CONTENT,
        "Gmail: this message looked unsolicited (spam)",
        "Check the message's content and links, and that recipients asked for it.",
    ),
    # --- Microsoft ---
    _rule(
        M,
        r"\bA?S3140\b",
        "S3140",
        SignalClass.REPUTATION,
        "Microsoft: the sending IP's network is on Outlook.com's block list",
        _DELIST_MICROSOFT + _CHECK,
    ),
    _rule(
        M,
        r"\bA?S3150\b",
        "S3150",
        SignalClass.REPUTATION,
        "Microsoft: the sending IP is on Outlook.com's block list",
        _DELIST_MICROSOFT + _CHECK,
    ),
    _rule(
        M,
        r"\b5\.7\.6(?:0[6-9]|[1-4]\d)\b",
        "",
        SignalClass.REPUTATION,
        "Microsoft: access denied, banned sending IP",
        _DELIST_MICROSOFT + _CHECK,
    ),
    _rule(
        M,
        r"\b4\.7\.65[0-2]\b",
        "",
        SignalClass.RATE,
        "Microsoft: the sending IP is rate limited for its reputation",
        "Let the queue retry, send less at once, and watch the IP in SNDS "
        "(https://sendersupport.olc.protection.outlook.com/snds/).",
    ),
    # --- Yahoo ---
    _rule(
        Y,
        r"\bTSS04\b",
        "TSS04",
        SignalClass.RATE,
        "Yahoo: deferred for unexpected volume or user complaints",
        "Let the queue retry and send less at once; Yahoo's deferrals clear once volume "
        "and complaints fall.",
    ),
    _rule(
        Y,
        r"\bTSS09\b",
        "TSS09",
        SignalClass.REPUTATION,
        "Yahoo: all mail from the sending IP is permanently deferred",
        "Retrying will not help: stop what sent unwanted mail, then ask Yahoo's sender "
        "support (https://senders.yahooinc.com) to review the IP.",
    ),
    _rule(
        Y,
        r"\bTS03\b",
        "TS03",
        SignalClass.REPUTATION,
        "Yahoo: all mail from the sending IP is permanently deferred (spam-like volume)",
        "Retrying will not help: stop what sent unwanted mail, then ask Yahoo's sender "
        "support (https://senders.yahooinc.com) to review the IP.",
    ),
    # --- anyone ---
    _rule(
        None,
        r"zen\.spamhaus\.org|spamhaus|bl\.spamcop\.net|spamcop|barracudacentral|"
        r"\bpsbl\b|uceprotect|\bsorbs\b|\b(?:block|black)list(?:ed)?\b.*\b(?:dnsbl|rbl)\b|"
        r"\b(?:dnsbl|rbl)\b",
        "",
        SignalClass.DNSBL,
        "The receiver found the sending IP on a DNS blocklist",
        "Look the IP up on the list the reply names and request removal there, after "
        "fixing what got it listed. " + _CHECK,
    ),
    _rule(
        None,
        r"cannot find your reverse hostname|reverse (?:dns|hostname|lookup)|"
        r"\bPTR\b|\brDNS\b",
        "",
        SignalClass.PTR,
        "The receiver found no PTR record (reverse DNS) for the sending IP, or one that "
        "does not resolve back to it",
        "Publish a PTR for the sending IP (through whoever owns the IP) whose name "
        "resolves to that IP. " + _CHECK,
    ),
    _rule(
        None,
        r"\bDMARC\b",
        "",
        SignalClass.DMARC,
        "The receiver says the message fails DMARC",
        "Sign with a key whose record is published, aligned with From. " + _CHECK,
    ),
    _rule(
        None,
        r"\bDKIM\b",
        "",
        SignalClass.DKIM,
        "The receiver says the DKIM signature fails or is missing",
        "Check that the selector's record matches the signing key: `reputable keys list`.",
    ),
    _rule(
        None,
        r"\bSPF\b|sender policy framework",
        "",
        SignalClass.SPF,
        "The receiver says the message fails SPF",
        "Add the sending IP to the SPF record of the MAIL FROM domain. " + _CHECK,
    ),
    _rule(
        None,
        r"rate.?limit|too many (?:messages|connections|recipients)",
        "",
        SignalClass.RATE,
        "The receiver limits how fast this host may send",
        "Let the queue retry; lower the rate for that destination "
        "(Postfix: a transport with smtp_destination_rate_delay).",
    ),
)

# Not part of an IP address: no digit or dot before, no digit or ".digit" after.
_ENHANCED = re.compile(r"(?<![\d.])[245]\.\d{1,3}\.\d{1,3}(?!\d|\.\d)")
_BASIC = re.compile(r"(?<![\d.])([245]\d\d)[ -]")
_GOOGLE = re.compile(r"(?:^|\.)(?:google\.com|googlemail\.com)$|\bgsmtp\b")
_MICROSOFT = re.compile(r"(?:^|\.)(?:outlook\.com|hotmail\.com|live\.com|msn\.com|microsoft\.com)$")
_YAHOO = re.compile(r"(?:^|\.)(?:yahoodns\.net|yahoo\.com|yahoo\.net|aol\.com)$")
# What each receiver's replies carry whatever the MX is named: Gmail's "gsmtp" tag, the
# pages Microsoft's and Yahoo's replies point to.
_REPLY_OF = re.compile(
    r"(?P<Google>\bgsmtp\b)"
    r"|(?P<Microsoft>\.protection\.outlook\.com|postmaster\.live\.com|sender\.office\.com"
    r"|mail\.live\.com)"
    r"|(?P<Yahoo>yahooinc\.com|postmaster\.yahoo\.com)"
)
_VARYING = (
    (re.compile(r"\[?\b(?:\d{1,3}\.){3}\d{1,3}\b\]?"), "<ip>"),
    (re.compile(r"\[?\b[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}\b\]?", re.IGNORECASE), "<ip>"),
    (re.compile(r"\[[A-Za-z0-9.-]+\.prod\.[A-Za-z0-9.-]*outlook\.com\]"), "<server>"),
    (re.compile(r"\b[0-9a-z]{2,}si\d+[0-9a-z.]* - gsmtp"), "<id> - gsmtp"),
    (re.compile(r"\s+"), " "),
)


def receiver_of(relay_host: str, reply: str = "") -> Receiver:
    """Whose server answered, from the relay's name (``gmail-smtp-in.l.google.com``) or, when
    that says nothing (an MX under the recipient's own domain), from the reply."""
    by_name = _receiver_named(relay_host.partition("[")[0])
    if by_name is not None:
        return by_name
    found = _REPLY_OF.search(reply) if reply else None
    return Receiver(found.lastgroup or "other") if found is not None else Receiver.OTHER


@lru_cache(maxsize=4096)
def _receiver_named(host: str) -> Receiver | None:
    """The receiver an MX host's name tells (a log names the same few hosts again and again)."""
    host = host.rstrip(".").lower()
    for receiver, pattern in ((Receiver.GOOGLE, _GOOGLE), (Receiver.MICROSOFT, _MICROSOFT)):
        if pattern.search(host):
            return receiver
    return Receiver.YAHOO if _YAHOO.search(host) else None


def status_code(reply: str) -> str:
    """The reply's enhanced status code ("5.7.26"), else its basic one ("550"), else ""."""
    reply = reply.partition(" said: ")[2] or reply  # Postfix: "host mx[ip] said: 550 ..."
    found = _ENHANCED.search(reply)
    if found is not None:
        return found.group(0)
    found = _BASIC.search(reply)
    return found.group(1) if found is not None else ""


def classify(reply: str, receiver: Receiver = Receiver.OTHER) -> Signal | None:
    """The signal in a receiver's reply, or None when it says nothing about reputation or
    authentication. A receiver's own rules apply to its own replies; the rest to any."""
    for rule in _RULES:
        if rule.receiver is not None and rule.receiver is not receiver:
            continue
        if rule.needle and rule.needle not in reply:
            continue
        if rule.pattern.search(reply):
            code = rule.code or status_code(reply)
            return Signal(receiver, code, rule.klass, rule.cause, rule.fix)
    return None


def normalized(reply: str) -> str:
    """The reply without what differs between two sendings of it (IP addresses, the receiver's
    server and session names), to group unknown replies by their text."""
    text = reply
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return text.strip()
