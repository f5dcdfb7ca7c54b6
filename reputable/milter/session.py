"""One milter connection: collects the facts of each message, asks policy, signs. Thin adapter.

Each callback is a few lines and delegates; all policy lives in
`reputable.policy`. Every callback runs inside `_boundary`, the one place
where an unexpected error is caught, logged once with the queue id, and
answered with a temporary failure so the MTA keeps the message and retries.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import Milter

from reputable.config import Action, OnError
from reputable.gate import WARNING_HEADER, GateDecision, decide_gate
from reputable.inbound.check import Envelope as Received
from reputable.inbound.check import InboundCheck, InboundReport, prepare
from reputable.inbound.dmarc_verdict import Disposition
from reputable.inbound.header import NAME as AUTH_RESULTS
from reputable.inbound.header import forged
from reputable.log import Field, emit, logger
from reputable.message_line import Decided, record
from reputable.policy import Envelope, Source, Verdict, classify_source, decide
from reputable.reputation import MessageFacts, WouldBlock
from reputable.runtime import Runtime, RuntimeHolder
from reputable.signing.headers import HeaderField
from reputable.signing.signer import MessageSigner

_log = logger("milter")
F = TypeVar("F", bound=Callable[..., int])

# Postfix's cleanup(8) presents mail from sendmail/pickup (non_smtpd_milters)
# as a connection from "localhost", 127.0.0.1, port 0: no TCP client has port 0.
LOCAL_SUBMISSION = ("localhost", "127.0.0.1", 0)


@dataclass(slots=True)
class Message:
    """What is known of the message in progress."""

    runtime: Runtime
    auth_user: str | None
    mail_from_domain: str = ""
    mail_from: str = ""  # the address, "" for <>
    queue_id: str = "-"
    gate: GateDecision | None = None
    facts: MessageFacts | None = None
    fields: list[HeaderField] = field(default_factory=list)
    verdict: Verdict | None = None
    signer: MessageSigner | None = None
    inbound: InboundCheck | None = None  # received mail being verified
    report: InboundReport | None = None  # what its verification found
    spent_s: float = 0.0
    # What the header block may still take ([milter] max_header_bytes, max_headers).
    header_room: int = 0
    fields_room: int = 0
    overflow: Overflow | None = None  # set once either is used up: the fields are dropped


class Overflow(StrEnum):
    """A header block over the limits; the values are the log's `reason` field."""

    BYTES = "headers_too_large"
    COUNT = "too_many_headers"


# Callbacks negotiated without a reply (SMFIP_NR_*): the MTA does not wait for
# them, which saves a round trip per header. A failure in one is remembered and
# answered by the next callback that does reply (data, end of headers, end of message).
NO_REPLY = frozenset({"connect", "hello", "envfrom", "header", "body"})


def _boundary(callback: F) -> F:
    """Time the callback and turn any exception into the configured answer (default tempfail)."""
    name = callback.__name__

    @functools.wraps(callback)
    def guarded(self: Session, *args: Any) -> int:
        started = time.perf_counter()
        try:
            if self.deferred_failure:
                # Nothing more to do for this message until the failure is answered.
                return Milter.CONTINUE if name in NO_REPLY else self.fail(self.deferred_failure)
            return callback(self, *args)
        except Exception:  # the message boundary: log it, never lose the message
            if name in NO_REPLY:
                self.deferred_failure = name
                return self.fail_later(name)
            return self.fail(name)
        finally:
            if self.message is not None:
                self.message.spent_s += time.perf_counter() - started

    return guarded  # type: ignore[return-value]


def header_value(raw: bytes) -> bytes:
    """Milter header values fold with LF; DKIM hashes them with CRLF (RFC 6376 §3.4)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def parse_client(
    family: int, hostaddr: Any
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
        try:
            return ipaddress.ip_address(str(hostaddr[0]).split("%")[0])
        except ValueError:
            return None
    return None


def is_local_submission(hostname: str, hostaddr: Any) -> bool:
    try:
        return (hostname, str(hostaddr[0]), int(hostaddr[1])) == LOCAL_SUBMISSION
    except (TypeError, IndexError, ValueError):
        return False


@Milter.header_leading_space
class Session(Milter.Base):
    def __init__(self, holder: RuntimeHolder) -> None:
        super().__init__()
        self.holder = holder
        holder.session_opened()
        self.client: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        self.local_submission = False
        self.helo = ""
        self.message: Message | None = None
        self.deferred_failure = ""  # a no-reply callback that failed, answered at the next reply
        self.waiting_for = ""  # the domain of the lookup that sent the end of headers to a worker

    def negotiate(self, opts: list[int]) -> int:
        answer: int = super().negotiate(opts)
        # Ask only for the macros used, at the stages they are used (fewer packets).
        self._ctx.setsymlist(Milter.M_ENVFROM, "{auth_authen}")
        self._ctx.setsymlist(Milter.M_EOH, "i")
        self._ctx.setsymlist(Milter.M_EOM, "i")
        return answer

    @Milter.noreply
    @_boundary
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.client = parse_client(family, hostaddr)
        self.local_submission = is_local_submission(hostname, hostaddr)
        fields = {Field.EVENT: "connect", Field.CLIENT: self.client, Field.DETAIL: hostname}
        emit(_log, logging.DEBUG, fields)
        return Milter.CONTINUE

    @Milter.noreply
    @_boundary
    def hello(self, hostname: str) -> int:
        self.helo = hostname.strip().rstrip(".")
        return Milter.CONTINUE

    @Milter.noreply
    @_boundary
    def envfrom(self, mailfrom: str, *params: str) -> int:
        auth = self.getsymval("{auth_authen}")
        runtime = self.holder.current
        limits = runtime.config.milter
        self.message = Message(
            runtime,
            auth or None,
            envelope_domain(mailfrom),
            envelope_address(mailfrom),
            header_room=limits.max_header_bytes,
            fields_room=limits.max_headers,
        )
        return Milter.CONTINUE

    @_boundary
    def data(self) -> int:
        # Implemented so Postfix waits for this reply instead of sending a lone macro packet.
        return Milter.CONTINUE

    @Milter.noreply
    @_boundary
    @Milter.decode("bytes")
    def header(self, name: str, value: bytes) -> int:
        message = self.message
        assert message is not None
        if message.overflow is not None:
            return Milter.CONTINUE  # answered at the end of headers
        header = HeaderField(name.encode("ascii", "surrogateescape"), header_value(value))
        message.header_room -= len(header.name) + len(header.value) + 3  # name ":" value CRLF
        message.fields_room -= 1
        if message.header_room < 0 or message.fields_room < 0:
            message.overflow = Overflow.BYTES if message.header_room < 0 else Overflow.COUNT
            message.fields = []  # never signed over part of its header: nothing is kept
        else:
            message.fields.append(header)
        return Milter.CONTINUE

    @_boundary
    def eoh(self) -> int:
        message = self.message
        assert message is not None
        message.queue_id = self.getsymval("i") or message.queue_id
        envelope = Envelope(self.client, message.auth_user, self.local_submission)
        source = classify_source(envelope, message.runtime.config.trust)
        if message.overflow is not None:
            return self.refuse_overflow(message, message.overflow, source)
        from_values = [f.value for f in message.fields if f.key == b"from"]
        verdict = decide(source, from_values, message.runtime.domains, message.runtime.keyring)
        message.verdict = verdict
        if verdict.source is not Source.EXTERNAL:
            self.judge(message, verdict)
        elif message.runtime.config.inbound.verify and self.holder.inbound is not None:
            self.start_verifying(message)
        gate = message.gate
        if gate is not None and gate.action in (Action.REJECT, Action.TEMPFAIL):
            return self.refuse(gate)
        idle = not verdict.keys and message.inbound is None
        if idle and (gate is None or gate.action is Action.ACCEPT):
            self.log_message("accept", verdict)
            self.message = None
            return Milter.ACCEPT  # nothing to sign or mark: skip the body entirely
        if verdict.keys:
            message.signer = MessageSigner(verdict.keys, message.runtime.policy)
            for header in message.fields:
                message.signer.header(header)
        return Milter.CONTINUE

    def judge(self, message: Message, verdict: Verdict) -> None:
        """Run the reputation gate for an outbound message (host snapshot, SPF, DMARC)."""
        reputation = self.holder.reputation
        if reputation is None:
            return
        try:
            facts = reputation.facts(message.mail_from_domain, verdict.from_domain, verdict.keys)
        except WouldBlock as miss:  # run again on a worker, in the queue of this domain
            self.waiting_for = miss.domain
            raise
        config = message.runtime.config
        message.facts = facts
        message.gate = decide_gate(facts.findings, config.actions, config.milter.mode)

    def start_verifying(self, message: Message) -> None:
        """Received mail: fetch what verifying it needs (may raise WouldBlock, like judge)."""
        lookups = self.holder.inbound
        assert lookups is not None
        client = str(self.client) if self.client is not None else None
        received = Received(client, message.mail_from, self.helo)
        try:
            from_domain = message.verdict.from_domain if message.verdict else None
            message.inbound = prepare(message.fields, received, lookups, from_domain)
        except WouldBlock as miss:
            self.waiting_for = miss.domain
            raise

    def report_inbound(self, message: Message, inbound: InboundCheck) -> int:
        """Write Authentication-Results (ours alone), and enforce DMARC where asked to."""
        lookups = self.holder.inbound
        assert lookups is not None
        report = inbound.finish(message.runtime.config.inbound, lookups.authserv_id)
        message.report = report
        for index in reversed(forged(message.fields, lookups.authserv_id)):
            self.chgheader(AUTH_RESULTS, index, "")
        self.addheader(AUTH_RESULTS, report.header, 0)
        dmarc = report.dmarc
        if report.disposition is Disposition.REJECT:
            why = (
                f"DMARC policy of {dmarc.from_domain} (p={dmarc.policy}) rejects mail that fails it"
            )
            self.setreply("550", "5.7.1", f"reputable: {why}")
            self.log_message("reject", message.verdict, reason="dmarc_fail")
            self.message = None
            return Milter.REJECT
        if report.disposition is Disposition.QUARANTINE:
            self.quarantine(f"DMARC fail for {dmarc.from_domain} (p={dmarc.policy})")
            self.log_message("hold", message.verdict, reason="dmarc_fail")
            self.message = None
            return Milter.ACCEPT
        self.log_message("accept", message.verdict, detail=report.exempt or None)
        self.message = None
        return Milter.ACCEPT

    def refuse(self, gate: GateDecision) -> int:
        """Answer 5xx or 4xx at the end of headers: the body need not be sent."""
        assert self.message is not None and self.message.verdict is not None
        if gate.action is Action.REJECT:
            self.setreply("550", "5.7.1", gate.reply("mail refused"))
            answer = Milter.REJECT
        else:
            self.setreply("451", "4.7.1", gate.reply("try again later"))
            answer = Milter.TEMPFAIL
        self.log_message(gate.action.value, self.message.verdict)
        self.message = None
        return answer

    def refuse_overflow(self, message: Message, overflow: Overflow, source: Source) -> int:
        """A header block over the limits: answered as on_error says, never signed."""
        limits = message.runtime.config.milter
        if overflow is Overflow.BYTES:
            over = f"more than {limits.max_header_bytes} bytes of header fields (max_header_bytes)"
        else:
            over = f"more than {limits.max_headers} header fields (max_headers)"
        action = limits.on_error
        self.log_message(action.value, None, reason=overflow, source=source, detail=over)
        self.message = None
        if action is OnError.ACCEPT:
            return Milter.ACCEPT
        # RFC 3463 X.3.4: message too big for system.
        self.setreply("451", "4.3.4", f"reputable: message header refused: {over}")
        return Milter.TEMPFAIL

    def lookup_domain(self) -> str:
        """The domain whose lookup the end of headers waits for (the lookup pool's queue)."""
        return self.waiting_for

    @Milter.noreply
    @_boundary
    def body(self, chunk: bytes) -> int:
        assert self.message is not None
        if self.message.signer is not None:
            self.message.signer.body(chunk)
        elif self.message.inbound is not None:
            self.message.inbound.body(chunk)
        return Milter.CONTINUE

    @_boundary
    def eom(self) -> int:
        message = self.message
        assert message is not None and message.verdict is not None
        message.queue_id = self.getsymval("i") or message.queue_id
        if message.inbound is not None:
            return self.report_inbound(message, message.inbound)
        if message.signer is not None:
            for signature in reversed(message.signer.signatures(int(time.time()))):
                self.addheader(signature.name.decode("ascii"), _milter_value(signature.value), 0)
        gate = message.gate
        action = gate.action if gate is not None else Action.ACCEPT
        if gate is not None and action is Action.FLAG:
            self.addheader(WARNING_HEADER, " " + gate.warning(), -1)
        if gate is not None and action is Action.HOLD:
            # Postfix moves the message to its hold queue: nothing is lost (postsuper -H releases it).
            self.quarantine(gate.reply("held"))
        self.log_message(action.value, message.verdict)
        self.message = None
        return Milter.ACCEPT

    def abort(self) -> int:
        self.message = None
        self.deferred_failure = ""
        return Milter.CONTINUE

    def close(self) -> int:
        self.message = None
        self.holder.session_closed()
        return Milter.CONTINUE

    def fail_later(self, stage: str) -> int:
        """Log a failure in a no-reply callback now; it is answered at the next reply."""
        queue_id = self.message.queue_id if self.message else "-"
        fields = {Field.QUEUE_ID: queue_id, Field.EVENT: "error", Field.DETAIL: stage}
        emit(_log, logging.ERROR, fields, exc_info=True)
        return Milter.CONTINUE

    def fail(self, stage: str) -> int:
        """Answer a failure inside one message; the MTA keeps the message and retries."""
        already_logged = stage == self.deferred_failure
        self.deferred_failure = ""
        runtime = self.message.runtime if self.message else self.holder.current
        queue_id = self.message.queue_id if self.message else "-"
        if not already_logged:
            fields = {Field.QUEUE_ID: queue_id, Field.EVENT: "error", Field.DETAIL: stage}
            emit(_log, logging.ERROR, fields, exc_info=True)
        action = runtime.config.milter.on_error
        self.log_message(
            action.value, self.message.verdict if self.message else None, reason="internal_error"
        )
        self.message = None
        if action is OnError.ACCEPT:
            return Milter.ACCEPT
        self.setreply("451", "4.3.0", "reputable: temporary failure while signing, try again later")
        return Milter.TEMPFAIL

    def log_message(
        self,
        action: str,
        verdict: Verdict | None,
        reason: str | None = None,
        *,
        source: Source | None = None,
        detail: str | None = None,
    ) -> None:
        message = self.message
        decided = Decided(
            message.queue_id if message else "-",
            action,
            source or (verdict.source if verdict else Source.EXTERNAL),
            verdict,
            "local" if self.local_submission else self.client or "-",
            reason,
            message.facts if message else None,
            message.gate if message else None,
            message.report if message else None,
            detail,
        )
        record(_log, self.holder.metrics, decided, message.spent_s if message else 0.0)


def envelope_domain(mailfrom: str) -> str:
    """The domain of the MAIL FROM address ("" for the null sender <>)."""
    address = mailfrom.strip().removeprefix("<").removesuffix(">")
    _, at, domain = address.rpartition("@")
    return domain.lower().rstrip(".") if at else ""


def envelope_address(mailfrom: str) -> str:
    """The MAIL FROM address without its brackets ("" for the null sender <>)."""
    return mailfrom.strip().removeprefix("<").removesuffix(">").strip()


def _milter_value(value: bytes) -> str:
    # Postfix takes folded header values with LF line breaks from a milter.
    return value.replace(b"\r\n", b"\n").decode("ascii")
