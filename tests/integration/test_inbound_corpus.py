"""The inbound corpus is what it says: independent verifiers give each case its expected word.

OpenDKIM 2.11 (``Mode v``, as a milter, fed by the direct driver from the
case's client IP, verifying at most five signatures) judges every DKIM
signature; pyspf's own command line (Debian's ``python3 -m spf``, in a mount
namespace whose /etc/resolv.conf names the test DNS server) judges SPF;
dkimpy's ``arc_verify`` judges the ARC chain; dkimpy's ``verify`` is a third
opinion on each signature. All of them ask the test DNS server, and each is
checked to have asked it.

Where OpenDKIM's word differs from what RFC 6376 and RFC 8601 say, the corpus
records both (``ExpectedSignature.result`` and ``.opendkim``) and this test
holds OpenDKIM to its own word, as it actually says it:

* **a key record that does not exist** (``key-missing``): RFC 6376 §6.1.2
  step 3 says PERMFAIL (no key for signature), RFC 8601's ``permerror``;
  OpenDKIM says ``dkim=fail reason="key not found in DNS"``.
* **a key whose queries time out** (``key-timeout``): RFC 6376 §6.1.2 says
  TEMPFAIL (key unavailable), RFC 8601's ``temperror``; OpenDKIM accepts
  the message and adds no Authentication-Results at all (its default
  ``On-DNSError tempfail`` notwithstanding; ``opendkim -t`` shows
  ``SETREPLY: rcode='451' xcode='4.7.5' replytxt='DKIM key retrieval
  failed'`` and then ``mlfi_eom() returned SMFIS_ACCEPT``).
* **a sixth signature** (``too-many-signatures``): beyond its
  ``MaximumSignaturesToVerify``, OpenDKIM still lists it, as
  ``dkim=neutral``; a verifier that stops at five (RFC 6376 §6.1 lets it)
  has nothing to say of it.

Where they agree: a revoked key (``p=`` empty) is ``dkim=fail reason="key
revoked"``, as RFC 6376 §6.1.2 step 6 asks (a failed signature check); a
key that does not match, a changed body or header are ``dkim=fail
reason="signature verification failed"``; an ``l=`` signature passes with a
footer appended after it (OpenDKIM's ``pass`` does not say that part of the
body is unsigned). OpenDKIM also writes ``dkim-atps=neutral``, which the
corpus ignores.
"""

from __future__ import annotations

import pytest

from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.inbound_corpus import (
    CASE_NAMES,
    Anchors,
    DkimVerdict,
    InboundCase,
    describe,
    signature_tags,
)
from tests.integration.harness.verifiers import verify_dkimpy


@pytest.mark.parametrize("name", CASE_NAMES)
def test_opendkim_gives_each_signature_its_expected_word(
    name: str, cases: dict[str, InboundCase], said: dict[str, Anchors]
) -> None:
    case, opendkim = cases[name], said[name].opendkim
    print(describe(case))
    print(opendkim)
    assert opendkim.action == "accept", f"{describe(case)}\n{opendkim}"
    expected = {(s.domain, s.b): s.opendkim for s in case.signatures if s.opendkim}
    assert opendkim.by_signature() == expected, f"{describe(case)}\n{opendkim}"
    verdicts = opendkim.verdicts
    if not case.signatures:
        assert verdicts is not None
        assert verdicts.dkim == (DkimVerdict("none"),), f"{describe(case)}\n{opendkim}"
    if not expected:
        return
    assert verdicts is not None
    for verdict in verdicts.dkim:  # every signature is told apart by d= and b=, and named right
        made = next(s for s in case.signatures if (s.domain, s.b) == (verdict.domain, verdict.b))
        assert (verdict.selector, verdict.algorithm) == (made.selector, made.algorithm)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_pyspf_gives_the_expected_spf_result(
    name: str, cases: dict[str, InboundCase], said: dict[str, Anchors]
) -> None:
    case, spf = cases[name], said[name].spf
    print(spf.output)
    assert spf.result == case.spf, f"{describe(case)}\npyspf: {spf.output}"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_dkimpy_gives_the_expected_arc_and_passes_exactly_the_passing_signatures(
    name: str, dns53: DnsServer, cases: dict[str, InboundCase], said: dict[str, Anchors]
) -> None:
    case = cases[name]
    assert said[name].arc == case.arc, describe(case)
    if not case.signatures:
        return
    result = verify_dkimpy(case.message, dns53)
    print(result)
    assert [r.selector for r in result.results] == [s.selector for s in case.signatures]
    for expected, found in zip(case.signatures, result.results, strict=True):
        if expected.result:
            assert found.passed == (expected.result == "pass"), f"{describe(case)}\n{result}"
        if expected.result == "temperror":
            assert found.result == "temperror", f"{describe(case)}\n{result}"


def test_the_corpus_covers_signers_algorithms_canonicalizations_and_results(
    cases: dict[str, InboundCase],
) -> None:
    signatures = [s for case in cases.values() for s in case.signatures]
    made = {(s.signer, s.algorithm) for s in signatures}
    assert made == {
        ("opendkim", "rsa-sha256"),
        ("opendkim", "ed25519-sha256"),
        ("dkimpy", "rsa-sha256"),
        ("dkimpy", "ed25519-sha256"),
    }
    dkim_results = {s.result for s in signatures}
    assert {"pass", "fail", "permerror", "temperror", ""} <= dkim_results
    canonicalizations = {
        tag["c"] for case in cases.values() for tag in signature_tags(case.message)
    }
    assert {"relaxed/relaxed", "simple/simple", "relaxed/simple"} <= canonicalizations
    assert {c.spf for c in cases.values()} == {
        "pass",
        "fail",
        "softfail",
        "neutral",
        "none",
        "temperror",
    }
    assert {(c.dmarc, c.dmarc_policy) for c in cases.values()} >= {
        ("pass", "reject"),
        ("fail", "none"),
        ("fail", "quarantine"),
        ("fail", "reject"),
        ("none", None),
    }
    assert {c.arc for c in cases.values()} == {"none", "pass", "fail"}
    assert len({c.client_ip for c in cases.values()}) == len(cases)
