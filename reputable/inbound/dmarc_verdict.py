"""DMARC of a received message from what was verified (RFC 9989 §4.10), and what enforcing it
means. Pure.

The identifiers: the d= of every DKIM signature that passed, and the domain SPF
checked (MAIL FROM's, or HELO's for a null sender) when SPF passed. Either,
aligned with the From domain under the record's adkim= / aspf=, is a pass.

Enforcement follows the policy that applies to the From domain (p=, sp= or np=),
one step lower under t=y (RFC 9989 §4.7: reject becomes quarantine, quarantine
none). The record's pct= is not read: RFC 9989 removed it, and a receiver that
sampled would reject the same mail one time in N at random.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from reputable.author import AuthorProblem
from reputable.checks.dmarc import DmarcLookup, aligned
from reputable.checks.spf import SpfResult
from reputable.verify.signatures import DkimResult, SignatureResult

_LOWER = {"reject": "quarantine", "quarantine": "none", "none": "none"}


class DmarcResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class Disposition(StrEnum):
    """What dmarc_enforce does with the message."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class DmarcVerdict:
    result: DmarcResult
    from_domain: str  # "" when the message has no single author domain
    policy: str = ""  # p=, sp= or np= as it applies to the From domain ("" without a record)
    testing: bool = False  # t=y
    record_domain: str = ""  # where the record was found
    aligned_by: str = ""  # "dkim d=example.org" or "spf example.org" on a pass
    reason: str = ""  # why not a pass, in a few words

    @property
    def requested(self) -> Disposition:
        """The disposition the domain asks of a failing message, after t=y."""
        if self.result is not DmarcResult.FAIL or not self.policy:
            return Disposition.NONE
        policy = _LOWER[self.policy] if self.testing else self.policy
        return Disposition(policy)


def evaluate_dmarc(
    from_domain: str | None,
    author_problem: AuthorProblem | None,
    lookup: DmarcLookup | None,
    signatures: Sequence[SignatureResult],
    spf_domain: str,
    spf_result: SpfResult,
    org_of: Callable[[str], str],
) -> DmarcVerdict:
    """The DMARC result of one received message; `lookup` is the From domain's policy."""
    if from_domain is None or lookup is None:
        if author_problem in (None, AuthorProblem.NO_FROM, AuthorProblem.FROM_NO_ADDRESS):
            return DmarcVerdict(DmarcResult.NONE, "", reason="no author domain")
        return DmarcVerdict(DmarcResult.PERMERROR, "", reason=f"From: {author_problem}")
    if lookup.error:
        return DmarcVerdict(DmarcResult.TEMPERROR, from_domain, reason=lookup.error)
    policy = lookup.policy
    if policy is None:
        return DmarcVerdict(DmarcResult.NONE, from_domain, reason=lookup.ignored or "no record")

    def org(name: str) -> str:
        if name == from_domain and policy.org_domain:
            return policy.org_domain
        return org_of(name)

    failed = DmarcVerdict(
        DmarcResult.FAIL,
        from_domain,
        policy.policy,
        policy.testing,
        policy.record_domain,
        reason="no aligned DKIM or SPF pass",
    )
    for signature in signatures:
        if signature.result is DkimResult.PASS and aligned(
            signature.domain, from_domain, policy.adkim, org
        ):
            return replace(
                failed, result=DmarcResult.PASS, aligned_by=f"dkim d={signature.domain}", reason=""
            )
    if spf_result is SpfResult.PASS and aligned(spf_domain, from_domain, policy.aspf, org):
        return replace(failed, result=DmarcResult.PASS, aligned_by=f"spf {spf_domain}", reason="")
    return failed
