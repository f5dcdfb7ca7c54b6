"""The Authentication-Results header field (RFC 8601) of a received message, and the ones a
sender forged with our authserv-id. Pure.

One result per method, one `dkim=` per signature verified (RFC 6008's
header.b tells apart two signatures of one domain), the reason of any result
that is not a pass in reason="...". The value is folded before each result,
as a milter hands header values to Postfix: with LF.

The field is written here, by RFC 8601's grammar, rather than with `authres`'s
classes: those cost some 80 µs a message (a tenth of what verifying one
costs), for a few string joins. `authres` parses every field back in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from reputable.checks.spf import SpfResult
from reputable.inbound.dmarc_verdict import DmarcResult, DmarcVerdict
from reputable.signing.headers import HeaderField
from reputable.verify.arc import ArcResult, ArcVerdict
from reputable.verify.signatures import SignatureResult

NAME = "Authentication-Results"
_KEY = NAME.lower().encode("ascii")
# RFC 2045 token: printable ASCII but for SPACE and tspecials; anything else is quoted.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
# What RFC 8601's pvalue takes as it is: [local-part] "@" domain (dot-atoms here).
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]*@[A-Za-z0-9.-]+")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
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
    results = [_dkim(s) for s in signatures] or ["dkim=none"]
    results.append(_spf(spf, spf_identity, spf_subject))
    results.append(_dmarc(dmarc))
    results.append(_arc(arc))
    return ";\n\t".join([authserv_id.lower(), *results])


def _value(text: str) -> str:
    """An RFC 8601 value: a token as it is, anything else a quoted-string."""
    if _TOKEN.fullmatch(text):
        return text
    escaped = _UNPRINTABLE.sub("?", text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _pvalue(text: str) -> str:
    return text if _ADDRESS.fullmatch(text) else _value(text)


def _result(
    method: str,
    result: str,
    comment: str = "",
    reason: str = "",
    properties: Sequence[tuple[str, str]] = (),
) -> str:
    parts = [f"{method}={result}"]
    if comment:
        parts.append(f"({_UNPRINTABLE.sub('?', comment).replace('(', '[').replace(')', ']')})")
    if reason:
        parts.append(f"reason={_value(reason)}")
    parts.extend(f"{name}={_pvalue(value)}" for name, value in properties if value)
    return " ".join(parts)


def _dkim(signature: SignatureResult) -> str:
    properties = (
        ("header.d", signature.domain),
        ("header.s", signature.selector),
        ("header.a", signature.algorithm),
        ("header.b", signature.b_prefix),
    )
    return _result("dkim", signature.result.value, "", signature.reason, properties)


def _spf(result: SpfResult, identity: str, subject: str) -> str:
    if identity == "helo":
        return _result("spf", result.value, properties=(("smtp.helo", subject),))
    if not _ADDRESS.fullmatch(subject):
        subject = subject.rpartition("@")[2]
    return _result("spf", result.value, properties=(("smtp.mailfrom", subject),))


def _dmarc(verdict: DmarcVerdict) -> str:
    comment = ""
    if verdict.policy:
        comment = f"p={verdict.policy}" + (" t=y" if verdict.testing else "")
    reason = verdict.reason if verdict.result is not DmarcResult.PASS else ""
    properties = (("header.from", verdict.from_domain),)
    return _result("dmarc", verdict.result.value, comment, reason, properties)


def _arc(verdict: ArcVerdict) -> str:
    comment = ""
    if verdict.result is not ArcResult.NONE and verdict.signer:
        comment = f"i={verdict.instances} d={verdict.signer}"
    return _result("arc", verdict.result.value, comment, verdict.reason)


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
