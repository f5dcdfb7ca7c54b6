"""The verification of one received message, in the milter's three steps.

`prepare` (end of headers) makes every DNS lookup the message needs: the key
of each DKIM signature and ARC set, SPF of the client, the From domain's DMARC
policy and the organizational domains alignment may ask for. In the event loop
a lookup that is not cached raises `WouldBlock`, and the end of headers runs
again on a worker. The answers are kept with the message, so `finish` (end of
message) never waits on the network: it hashes what `body` was given, verifies
and decides. Only `prepare` does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from reputable.author import Author, AuthorProblem, author_domain
from reputable.checks.dmarc import DmarcLookup
from reputable.checks.spf import SpfEvaluation, SpfResult
from reputable.config import InboundConfig
from reputable.inbound.dmarc_verdict import Disposition, DmarcVerdict, evaluate_dmarc
from reputable.inbound.header import header_value
from reputable.inbound.lookups import InboundLookups, KeyAnswer
from reputable.log import Field
from reputable.signing.headers import HeaderField
from reputable.verify.arc import ArcResult, ArcVerdict, ArcVerifier
from reputable.verify.signatures import (
    DkimResult,
    DkimVerifier,
    KeyUnavailable,
    SignatureResult,
)

KEY_BUDGET = 3  # times [dns] timeout for all the key lookups of one message

# The message's dkim_in= word: the best of its signatures' results.
_BEST_FIRST = (
    DkimResult.PASS,
    DkimResult.POLICY,
    DkimResult.FAIL,
    DkimResult.TEMPERROR,
    DkimResult.PERMERROR,
    DkimResult.NEUTRAL,
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the SMTP session said of the message."""

    client_ip: str | None  # None: no IP client (a unix socket, a local submission)
    mail_from: str  # the address, "" for the null sender <>
    helo: str


@dataclass(frozen=True, slots=True)
class InboundReport:
    """Everything verified, the header that says it, and what enforcement asks."""

    signatures: tuple[SignatureResult, ...]
    spf: SpfResult
    dmarc: DmarcVerdict
    arc: ArcVerdict
    header: str  # the Authentication-Results value
    disposition: Disposition  # what dmarc_enforce does (NONE when off or exempt)
    exempt: str = ""  # why a DMARC failure is not enforced ("arc pass by lists.example.org")

    @property
    def dkim_word(self) -> str:
        results = {s.result for s in self.signatures}
        return next((r.value for r in _BEST_FIRST if r in results), "none")

    def results(self) -> list[tuple[str, str]]:
        """(method, result) of each method, the words of the log line and of the metrics."""
        return [
            ("dkim", self.dkim_word),
            ("spf", self.spf.value),
            ("dmarc", self.dmarc.result.value),
            ("arc", self.arc.result.value),
        ]

    def log_fields(self) -> dict[Field, object]:
        return {
            Field.DKIM_IN: self.dkim_word,
            Field.SPF_IN: self.spf.value,
            Field.DMARC_IN: self.dmarc.result.value,
            Field.ARC_IN: self.arc.result.value,
        }


@dataclass(slots=True)
class InboundCheck:
    fields: Sequence[HeaderField]
    envelope: Envelope
    dkim: DkimVerifier
    arc: ArcVerifier
    keys: dict[tuple[str, str], KeyAnswer]
    spf: SpfEvaluation | None
    from_domain: str | None
    author_problem: AuthorProblem | None
    dmarc: DmarcLookup | None
    orgs: dict[str, str] = field(default_factory=dict)

    @property
    def spf_identity(self) -> tuple[str, str, str]:
        """("mailfrom" | "helo", the address or HELO name checked, its domain)."""
        if self.envelope.mail_from:
            return "mailfrom", self.envelope.mail_from, self.envelope.mail_from.rpartition("@")[2]
        return "helo", self.envelope.helo, self.envelope.helo

    def body(self, chunk: bytes) -> None:
        self.dkim.body(chunk)
        self.arc.body(chunk)

    def finish(self, config: InboundConfig, authserv_id: str) -> InboundReport:
        signatures = tuple(self.dkim.results(self._lookup))
        arc = self.arc.result(self._lookup)
        identity, subject, spf_domain = self.spf_identity
        spf = self.spf.result if self.spf is not None else SpfResult.NONE
        dmarc = evaluate_dmarc(
            self.from_domain,
            self.author_problem,
            self.dmarc,
            signatures,
            spf_domain.lower(),
            spf,
            lambda name: self.orgs.get(name.lower(), name.lower()),
        )
        disposition, exempt = Disposition.NONE, ""
        if config.dmarc_enforce and dmarc.requested is not Disposition.NONE:
            if arc.result is ArcResult.PASS and arc.signer in config.trusted_arc_signers:
                exempt = f"arc pass sealed by {arc.signer}"
            else:
                disposition = dmarc.requested
        header = header_value(authserv_id, signatures, spf, identity, subject, dmarc, arc)
        return InboundReport(signatures, spf, dmarc, arc, header, disposition, exempt)

    def _lookup(self, selector: str, domain: str) -> Sequence[str]:
        answer = self.keys.get((selector, domain.lower()))
        if answer is None:  # every key was fetched by prepare: this one was not asked for
            raise KeyUnavailable("not fetched")
        if answer.error:
            raise KeyUnavailable(answer.error)
        return answer.records


def prepare(
    fields: Sequence[HeaderField],
    envelope: Envelope,
    lookups: InboundLookups,
    from_domain: str | None = None,
    now: float | None = None,
) -> InboundCheck:
    """Parse the signatures and make every lookup (may raise WouldBlock in the event loop).

    `from_domain`: the author domain when already known (the policy has read it);
    otherwise the From fields are read here, and why there is none is kept.
    """
    dkim = DkimVerifier(fields, now)
    arc = ArcVerifier(fields, now)
    keys: dict[tuple[str, str], KeyAnswer] = {}
    # A message may name up to 5 + 51 keys; each lookup is bounded by [dns] timeout, and all of
    # them together by KEY_BUDGET of those: keys not fetched by then are temporary errors.
    deadline = time.monotonic() + KEY_BUDGET * lookups.timeout_s
    for selector, domain in [*dkim.keys_needed(), *arc.keys_needed()]:
        if time.monotonic() > deadline:
            keys[(selector, domain.lower())] = KeyAnswer(
                (), "this message's key lookups took too long"
            )
        else:
            keys[(selector, domain.lower())] = lookups.key(selector, domain)
    spf = None
    identity = envelope.mail_from or (f"postmaster@{envelope.helo}" if envelope.helo else "")
    if envelope.client_ip is not None and identity:
        spf = lookups.spf(envelope.client_ip, identity, envelope.helo)
    author = (
        Author(from_domain)
        if from_domain
        else author_domain([f.value for f in fields if f.key == b"from"])
    )
    dmarc = lookups.dmarc(author.domain) if author.domain is not None else None
    check = InboundCheck(
        fields, envelope, dkim, arc, keys, spf, author.domain, author.problem, dmarc
    )
    policy = dmarc.policy if dmarc is not None else None
    if policy is not None:
        names = {domain for _, domain in dkim.keys_needed()} | {check.spf_identity[2].lower()}
        relaxed = policy.adkim == "r" or policy.aspf == "r"
        for name in sorted(names - {policy.from_domain, ""}):
            if relaxed:
                check.orgs[name] = lookups.org_domain(name)
        check.orgs[policy.from_domain] = policy.org_domain or policy.from_domain
    return check
