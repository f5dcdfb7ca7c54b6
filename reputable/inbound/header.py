"""The Authentication-Results header field (RFC 8601) of a received message, built with
`authres`, and the ones a sender forged with our authserv-id. Pure.

One result per method, one `dkim=` per signature verified (RFC 6008's
header.b tells apart two signatures of one domain), the reason of any result
that is not a pass in reason="...". The value is folded before each result,
as a milter hands header values to Postfix: with LF.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import authres
import authres.arc
import authres.dmarc
from authres.core import AuthenticationResult, AuthenticationResultProperty

from reputable.checks.spf import SpfResult
from reputable.inbound.dmarc_verdict import DmarcResult, DmarcVerdict
from reputable.signing.headers import HeaderField
from reputable.verify.arc import ArcResult, ArcVerdict
from reputable.verify.signatures import SignatureResult

NAME = "Authentication-Results"
_KEY = NAME.lower().encode("ascii")
# An address RFC 8601 can carry as a plain value; anything else is reported by its domain.
_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+$")
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")


def header_value(
    authserv_id: str,
    signatures: Sequence[SignatureResult],
    spf: SpfResult,
    spf_identity: str,  # "mailfrom" or "helo"
    spf_subject: str,  # the MAIL FROM address, or the HELO name
    dmarc: DmarcVerdict,
    arc: ArcVerdict,
) -> str:
    """The field's value: `authserv-id;` then each result on a line of its own."""
    results: list[AuthenticationResult] = [_dkim(s) for s in signatures]
    if not signatures:
        results.append(AuthenticationResult("dkim", result="none"))
    results.append(_spf(spf, spf_identity, spf_subject))
    results.append(_dmarc(dmarc))
    results.append(_arc(arc))
    return ";\n\t".join([authserv_id.lower(), *(str(r) for r in results)])


def _dkim(signature: SignatureResult) -> AuthenticationResult:
    properties = [
        AuthenticationResultProperty("header", "d", signature.domain),
        AuthenticationResultProperty("header", "s", signature.selector),
        AuthenticationResultProperty("header", "a", signature.algorithm),
        AuthenticationResultProperty("header", "b", signature.b_prefix),
    ]
    return AuthenticationResult(
        "dkim",
        result=signature.result.value,
        reason=signature.reason or None,
        properties=[p for p in properties if p.value],
    )


def _spf(result: SpfResult, identity: str, subject: str) -> AuthenticationResult:
    if identity == "helo":
        return authres.SPFAuthenticationResult(result=result.value, smtp_helo=subject or None)
    if not _PLAIN_ADDRESS.match(subject):
        subject = subject.rpartition("@")[2]
    return authres.SPFAuthenticationResult(result=result.value, smtp_mailfrom=subject or None)


def _dmarc(verdict: DmarcVerdict) -> AuthenticationResult:
    comment = None
    if verdict.policy:
        comment = f"p={verdict.policy}" + (" t=y" if verdict.testing else "")
    return authres.dmarc.DMARCAuthenticationResult(
        result=verdict.result.value,
        result_comment=comment,
        reason=(verdict.reason or None) if verdict.result is not DmarcResult.PASS else None,
        header_from=verdict.from_domain or None,
    )


def _arc(verdict: ArcVerdict) -> AuthenticationResult:
    comment = None
    if verdict.result is not ArcResult.NONE and verdict.signer:
        comment = f"i={verdict.instances} d={verdict.signer}"
    return authres.arc.ARCAuthenticationResult(
        result=verdict.result.value,
        result_comment=comment,
        reason=verdict.reason or None,
    )


def authserv_id_of(value: bytes) -> str:
    """The authserv-id an Authentication-Results value begins with (lower case), "" if none."""
    text = _COMMENT.sub(" ", value.decode("utf-8", "replace"))
    token = text.strip().split(";", 1)[0].split()
    return token[0].lower() if token else ""


def forged(fields: Sequence[HeaderField], authserv_id: str) -> list[int]:
    """The 1-based indexes, among the Authentication-Results fields, of those claiming to be ours."""
    ours = authserv_id.lower()
    indexes: list[int] = []
    n = 0
    for field in fields:
        if field.key == _KEY:
            n += 1
            if authserv_id_of(field.value) == ours:
                indexes.append(n)
    return indexes
