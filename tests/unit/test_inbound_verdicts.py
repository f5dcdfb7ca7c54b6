"""DMARC of received mail from what was verified, and the Authentication-Results that says it."""

from __future__ import annotations

import authres
import authres.arc
import authres.dmarc
import pytest

from reputable.author import AuthorProblem
from reputable.checks.dmarc import DmarcLookup, discover_policy
from reputable.checks.spf import SpfResult
from reputable.inbound.dmarc_verdict import Disposition, DmarcResult, evaluate_dmarc
from reputable.inbound.header import authserv_id_of, forged, header_value
from reputable.signing.headers import HeaderField
from reputable.verify.arc import ArcResult, ArcVerdict
from reputable.verify.signatures import DkimResult, SignatureResult

RECORDS = {
    "example.org": ["v=DMARC1; p=reject; sp=quarantine"],
    "strict.example": ["v=DMARC1; p=reject; adkim=s; aspf=s"],
}
ORGS = {"mail.example.org": "example.org", "news.example.org": "example.org"}


def org_of(name: str) -> str:
    return ORGS.get(name, name)


def signature(domain: str, result: DkimResult = DkimResult.PASS) -> SignatureResult:
    return SignatureResult(result, domain, "sel", "rsa-sha256", "", None, "AbCdEfGh")


def dmarc(
    from_domain: str,
    signatures: list[SignatureResult],
    spf_domain: str = "bounce.other.example",
    spf: SpfResult = SpfResult.PASS,
    lookup: DmarcLookup | None = None,
) -> tuple[DmarcResult, str, Disposition]:
    found = lookup or discover_policy(from_domain, RECORDS)
    verdict = evaluate_dmarc(from_domain, None, found, signatures, spf_domain, spf, org_of)
    return verdict.result, verdict.aligned_by, verdict.requested


def test_dkim_alone_aligns_relaxed_and_strict_wants_the_same_name() -> None:
    assert dmarc("example.org", [signature("mail.example.org")])[:2] == (
        DmarcResult.PASS,
        "dkim d=mail.example.org",
    )
    assert dmarc("strict.example", [signature("mail.strict.example")])[0] is DmarcResult.FAIL
    failed = [signature("example.org", DkimResult.FAIL)]
    assert dmarc("example.org", failed, spf=SpfResult.SOFTFAIL)[0] is DmarcResult.FAIL


def test_spf_alone_aligns_when_it_passes_for_a_domain_of_the_same_organization() -> None:
    assert dmarc("example.org", [], "news.example.org")[:2] == (
        DmarcResult.PASS,
        "spf news.example.org",
    )
    assert dmarc("example.org", [], "news.example.org", SpfResult.NEUTRAL)[0] is DmarcResult.FAIL


@pytest.mark.parametrize(
    ("from_domain", "record", "wanted"),
    [
        ("example.org", None, Disposition.REJECT),
        ("news.example.org", None, Disposition.QUARANTINE),  # sp= of the organizational domain
        ("example.net", "v=DMARC1; p=reject; t=y", Disposition.QUARANTINE),
        ("example.net", "v=DMARC1; p=quarantine; t=y", Disposition.NONE),
        ("example.net", "v=DMARC1; p=quarantine; pct=0", Disposition.QUARANTINE),  # no pct
        ("example.net", "v=DMARC1; p=none", Disposition.NONE),
    ],
)
def test_a_failure_asks_for_the_policy_that_applies_one_step_lower_under_t(
    from_domain: str, record: str | None, wanted: Disposition
) -> None:
    records = {**RECORDS, **({"example.net": [record]} if record else {})}
    lookup = discover_policy(from_domain, records)
    assert dmarc(from_domain, [], spf=SpfResult.FAIL, lookup=lookup) == (
        DmarcResult.FAIL,
        "",
        wanted,
    )


def test_no_record_dns_trouble_and_no_single_author_are_none_temperror_permerror() -> None:
    assert dmarc("norecord.example", [signature("norecord.example")])[0] is DmarcResult.NONE
    trouble = DmarcLookup(None, "a timeout", from_domain="example.org")
    assert dmarc("example.org", [], lookup=trouble)[0] is DmarcResult.TEMPERROR
    two = evaluate_dmarc(
        None, AuthorProblem.MULTIPLE_AUTHOR_DOMAINS, None, [], "", SpfResult.PASS, org_of
    )
    assert (two.result, two.requested) == (DmarcResult.PERMERROR, Disposition.NONE)
    none = evaluate_dmarc(None, AuthorProblem.NO_FROM, None, [], "", SpfResult.PASS, org_of)
    assert none.result is DmarcResult.NONE


def test_the_header_parses_back_with_authres_to_what_was_found() -> None:
    lookup = discover_policy("example.org", RECORDS)
    signatures = [
        signature("example.org"),
        SignatureResult(
            DkimResult.FAIL,
            "example.org",
            "e1",
            "ed25519-sha256",
            "body hash did not verify",
            None,
            "XyZ+/123",
        ),
    ]
    verdict = evaluate_dmarc(
        "example.org", None, lookup, signatures, "example.org", SpfResult.SOFTFAIL, org_of
    )
    arc = ArcVerdict(ArcResult.PASS, 2, "lists.example.net", "")
    value = header_value(
        "MX.Test", signatures, SpfResult.SOFTFAIL, "mailfrom", "bob@example.org", verdict, arc
    )
    assert "\n\t" in value and "\r" not in value  # folded with LF, one result a line
    parsed = authres.FeatureContext(authres.dmarc, authres.arc).parse_value(
        value.replace("\n\t", " ")
    )
    assert parsed.authserv_id == "mx.test"
    found = [(r.method, r.result) for r in parsed.results]
    assert found == [
        ("dkim", "pass"),
        ("dkim", "fail"),
        ("spf", "softfail"),
        ("dmarc", "pass"),
        ("arc", "pass"),
    ]
    dkim_fail = parsed.results[1]
    assert dkim_fail.reason == "body hash did not verify"
    props = {(p.type, p.name): p.value for p in dkim_fail.properties}
    assert props[("header", "b")] == "XyZ+/123" and props[("header", "s")] == "e1"
    spf = parsed.results[2]
    assert [(p.name, p.value) for p in spf.properties] == [("mailfrom", "bob@example.org")]


def test_a_null_sender_reports_spf_for_helo_and_an_odd_address_by_its_domain() -> None:
    verdict = evaluate_dmarc(None, AuthorProblem.NO_FROM, None, [], "", SpfResult.PASS, org_of)
    arc = ArcVerdict(ArcResult.NONE, 0, "", "")
    helo = header_value("mx", [], SpfResult.PASS, "helo", "mail.example.org", verdict, arc)
    assert "dkim=none" in helo and "spf=pass smtp.helo=mail.example.org" in helo
    odd = header_value("mx", [], SpfResult.PASS, "mailfrom", '"a b"@example.org', verdict, arc)
    assert "smtp.mailfrom=example.org" in odd


def test_only_fields_claiming_our_authserv_id_are_forged() -> None:
    fields = [
        HeaderField(b"Authentication-Results", b" other.example; dkim=pass"),
        HeaderField(b"Received", b" from x by mx.test"),
        HeaderField(b"authentication-results", b" (a comment) MX.test;\r\n\tdkim=pass"),
        HeaderField(b"Authentication-Results", b" mx.test.evil; spf=pass"),
        HeaderField(b"Authentication-Results", b" mx.test; none"),
    ]
    assert forged(fields, "mx.test") == [2, 4]
    assert authserv_id_of(b" mx.test 1; none") == "mx.test"
    assert authserv_id_of(b"") == ""
