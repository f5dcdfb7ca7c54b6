"""DMARC (RFC 9989): the tree walk, the organizational domain, policy discovery, alignment, interpret_dmarc.

Also interpret_dkim_record (checks/dkimdns.py): the DKIM key record is what
DKIM alignment stands on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import dns.exception
import dns.resolver
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reputable.checks.dkimdns import interpret_dkim_record, key_record
from reputable.checks.dmarc import (
    DkimSignature,
    DmarcLookup,
    DmarcPolicy,
    KeyRecord,
    aligned,
    discover_policy,
    dmarc_record,
    interpret_dmarc,
    org_domain_of,
    organizational_domain,
    parse_dmarc_record,
    query_dmarc,
    tree_walk_names,
)
from reputable.checks.findings import Outcome, Status
from reputable.keys.dnscheck import DnsStatus, RecordCheck
from tests.unit.test_spf import FakeResolver

REJECT = "v=DMARC1; p=reject"


# --- the walk (RFC 9989 §4.10) ---


def test_walk_of_the_rfc_example_takes_eight_queries() -> None:
    # RFC 9989 §4.10: the example's eight queries, shortened to 7 labels after the first.
    assert tree_walk_names("a.b.c.d.e.f.g.h.i.j.mail.example.com") == (
        "a.b.c.d.e.f.g.h.i.j.mail.example.com",
        "g.h.i.j.mail.example.com",
        "h.i.j.mail.example.com",
        "i.j.mail.example.com",
        "j.mail.example.com",
        "mail.example.com",
        "example.com",
        "com",
    )


@pytest.mark.parametrize(
    ("domain", "names"),
    [
        ("example.com", ("example.com", "com")),
        ("A.Mail.Example.COM.", ("a.mail.example.com", "mail.example.com", "example.com", "com")),
        ("com", ("com",)),
        ("", ()),
    ],
)
def test_walk_goes_one_label_at_a_time_to_the_tld(domain: str, names: tuple[str, ...]) -> None:
    assert tree_walk_names(domain) == names


@given(st.lists(st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True), min_size=1, max_size=30))
def test_walk_never_exceeds_eight_queries_and_ends_at_the_tld(labels: list[str]) -> None:
    names = tree_walk_names(".".join(labels))
    assert 1 <= len(names) <= 8
    assert names[0] == ".".join(labels) and names[-1] == labels[-1]
    assert all(len(a.split(".")) > len(b.split(".")) for a, b in itertools.pairwise(names))


# --- records ---


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("v=DMARC1; p=reject", {"v": "DMARC1", "p": "reject"}),
        (
            "v = DMARC1 ;P=Quarantine;; rua=mailto:a@example.com;",
            {"v": "DMARC1", "p": "Quarantine", "rua": "mailto:a@example.com"},
        ),
        ("V=DMARC1;p=none", {"v": "DMARC1", "p": "none"}),
        ("v=DMARC1", {"v": "DMARC1"}),
        ("v=dmarc1; p=reject", None),  # the value is case-sensitive (§4.8)
        ("p=reject; v=DMARC1", None),  # v= must come first
        ("v=DMARC10; p=reject", None),
        ("v=spf1 -all", None),
        ("v=DMARC1; p=reject; p=none; junk; sp=none", {"v": "DMARC1", "p": "reject", "sp": "none"}),
    ],
)
def test_parse_dmarc_record(text: str, tags: dict[str, str] | None) -> None:
    assert parse_dmarc_record(text) == tags


def test_several_dmarc_records_at_a_name_are_all_discarded() -> None:
    assert dmarc_record([REJECT, "v=DMARC1; p=none"]) is None
    assert dmarc_record([REJECT, "some-verification=1"]) == {"v": "DMARC1", "p": "reject"}


# --- the organizational domain: RFC 9989 §4.10.2's examples as tables (name → records) ---

ORG_CASES: list[tuple[str, Mapping[str, Sequence[str]], str]] = [
    # "records at _dmarc.mail.example.com and _dmarc.example.com ... example.com"
    ("a.mail.example.com", {"mail.example.com": [REJECT], "example.com": [REJECT]}, "example.com"),
    # "a record at _dmarc.mail.example.com with psd=n ... mail.example.com"
    (
        "a.mail.example.com",
        {"mail.example.com": ["v=DMARC1; p=reject; psd=n"], "example.com": [REJECT]},
        "mail.example.com",
    ),
    # "only ... _dmarc.com and that record contains psd=y ... example.com"
    ("a.mail.example.com", {"com": ["v=DMARC1; p=reject; psd=y"]}, "example.com"),
    # rule 2's example: psd=y at example.com after mail.example.com → mail.example.com
    ("mail.example.com", {"example.com": ["v=DMARC1; p=none; psd=y"]}, "mail.example.com"),
    # no record anywhere: the domain itself
    ("a.mail.example.com", {}, "a.mail.example.com"),
    # the starting domain's own psd=y does not make a lower name the org domain
    ("example.com", {"example.com": ["v=DMARC1; p=none; psd=y"]}, "example.com"),
    # psd=u is no psd tag
    ("a.example.com", {"a.example.com": ["v=DMARC1; p=none; psd=u"]}, "a.example.com"),
    # two records at example.com are discarded: the record at mail.example.com is the fewest labels
    (
        "a.mail.example.com",
        {"mail.example.com": [REJECT], "example.com": [REJECT, "v=DMARC1; p=none"]},
        "mail.example.com",
    ),
    # the walk stops at psd=n: a record higher up is never seen
    (
        "x.a.example.com",
        {"a.example.com": ["v=DMARC1; p=none; psd=n"], "example.com": [REJECT]},
        "a.example.com",
    ),
    # a record below the 8-query shortcut is skipped by the walk
    (
        "a.b.c.d.e.f.g.h.example.com",
        {"b.c.d.e.f.g.h.example.com": [REJECT]},
        "a.b.c.d.e.f.g.h.example.com",
    ),
]


@pytest.mark.parametrize(("domain", "records", "org"), ORG_CASES)
def test_organizational_domain(domain: str, records: Mapping[str, Sequence[str]], org: str) -> None:
    assert organizational_domain(domain, records) == org


# --- policy discovery (RFC 9989 §4.10.1) ---


def policy_of(
    from_domain: str, records: Mapping[str, Sequence[str]], exists: bool = True
) -> DmarcPolicy:
    found = discover_policy(from_domain, records, exists)
    assert found.policy is not None, found
    return found.policy


def test_author_domain_record_gives_p() -> None:
    records = {"example.com": ["v=DMARC1; p=reject; sp=none; adkim=s; aspf=S"]}
    assert policy_of("example.com", records) == DmarcPolicy(
        "example.com", "example.com", "reject", "s", "s", "example.com"
    )


def test_subdomain_gets_sp_else_p() -> None:
    with_sp = {"example.com": ["v=DMARC1; p=reject; sp=quarantine"]}
    assert policy_of("news.example.com", with_sp).policy == "quarantine"
    assert policy_of("news.example.com", {"example.com": [REJECT]}).policy == "reject"


def test_non_existent_subdomain_gets_np() -> None:
    records = {"example.com": ["v=DMARC1; p=none; sp=quarantine; np=reject"]}
    assert policy_of("ghost.example.com", records, exists=False).policy == "reject"
    assert policy_of("ghost.example.com", records, exists=True).policy == "quarantine"
    no_np = {"example.com": ["v=DMARC1; p=none; sp=quarantine"]}
    assert policy_of("ghost.example.com", no_np, exists=False).policy == "quarantine"


def test_intermediate_record_is_not_the_policy_of_a_lower_name() -> None:
    # §4.10.1: Author Domain, else its organizational domain, else its PSD.
    records = {"mail.example.com": ["v=DMARC1; p=none"], "example.com": [REJECT]}
    found = policy_of("a.mail.example.com", records)
    assert (found.record_domain, found.policy, found.org_domain) == (
        "example.com",
        "reject",
        "example.com",
    )


def test_public_suffix_record_applies_when_the_org_domain_has_none() -> None:
    records = {"test": ["v=DMARC1; p=quarantine; sp=reject; psd=y"]}
    found = policy_of("mail.example.test", records)
    assert (found.record_domain, found.org_domain, found.policy) == (
        "test",
        "example.test",
        "reject",
    )


def test_no_record_anywhere_is_no_policy() -> None:
    assert discover_policy("a.example.com", {"example.com": ["v=spf1 -all"]}) == DmarcLookup(
        None, from_domain="a.example.com"
    )


def test_missing_p_is_p_none() -> None:
    assert policy_of("example.com", {"example.com": ["v=DMARC1; rua=x"]}).policy == "none"


def test_invalid_policy_with_rua_is_p_none_without_rua_ignored() -> None:
    rua = {"example.com": ["v=DMARC1; p=bogus; rua=mailto:d@example.com"]}
    assert policy_of("example.com", rua).policy == "none"
    bad_sp = {"example.com": ["v=DMARC1; p=reject; sp=nope; rua=mailto:d@example.com"]}
    assert policy_of("news.example.com", bad_sp).policy == "none"
    found = discover_policy("example.com", {"example.com": ["v=DMARC1; p=bogus"]})
    assert found.policy is None
    assert "p=bogus" in found.ignored and "receivers ignore it" in found.ignored


def test_testing_flag_and_bad_modes_fall_back_to_defaults() -> None:
    found = policy_of("example.com", {"example.com": ["v=DMARC1; p=reject; t=y; adkim=x"]})
    assert (found.testing, found.adkim, found.aspf) == (True, "r", "r")


# --- alignment (RFC 9989 §4.4's table and strict/relaxed) ---


def org_by_table(table: Mapping[str, str]) -> Callable[[str], str]:
    return lambda name: table.get(name, name)


ORGS = org_by_table(
    {
        "foo.example.com": "example.com",
        "news.example.com": "example.com",
        "example.com": "example.com",
        "foo.example.net": "example.net",
        "bounce.example.net": "example.net",
    }
)


@pytest.mark.parametrize(
    ("identifier", "author", "mode", "expected"),
    [
        ("foo.example.com", "news.example.com", "r", True),  # §4.4: relaxed
        ("news.example.com", "news.example.com", "s", True),  # strict: identical
        ("foo.example.net", "news.example.com", "r", False),  # none
        ("foo.example.com", "news.example.com", "s", False),
        ("News.Example.COM.", "news.example.com", "s", True),  # case and the root dot
        ("", "news.example.com", "r", False),
        ("example.com", "", "r", False),
    ],
)
def test_aligned(identifier: str, author: str, mode: str, expected: bool) -> None:
    assert aligned(identifier, author, mode, ORGS) is expected


def test_strict_alignment_never_asks_for_an_org_domain() -> None:
    def refuse(name: str) -> str:
        raise AssertionError(name)

    assert not aligned("a.example.com", "example.com", "s", refuse)


# --- interpret_dmarc ---


def lookup(
    policy: str = "reject",
    from_domain: str = "example.com",
    record_domain: str = "example.com",
    adkim: str = "r",
    aspf: str = "r",
    testing: bool = False,
) -> DmarcLookup:
    return DmarcLookup(
        DmarcPolicy(from_domain, record_domain, policy, adkim, aspf, "example.com", testing),
        ttl_s=900,
        from_domain=from_domain,
    )


def signed(domain: str, record: KeyRecord = KeyRecord.MATCHING) -> list[DkimSignature]:
    """One signature of `domain` by selector s1, its published record as given."""
    return [DkimSignature(domain, "s1", record)]


def test_dkim_aligned_is_ok_even_with_mail_from_unaligned() -> None:
    found = interpret_dmarc(lookup(), "bounce.example.net", True, signed("example.com"), ORGS)
    assert (found.id, found.status, found.outcome, found.ttl_s) == (
        "dmarc.example.com",
        Status.OK,
        None,
        900,
    )
    assert "aligned by DKIM d=example.com (relaxed)" in found.summary
    assert "p=reject at _dmarc.example.com" in found.summary


def test_an_aligned_signature_whose_record_is_another_key_does_not_align() -> None:
    # The dkim row says fail (another key at s1._domainkey), and SPF does not pass: under
    # p=reject receivers reject this mail, so it must not "pass DMARC aligned by DKIM".
    wrong = signed("example.com", KeyRecord.WRONG)
    found = interpret_dmarc(lookup(), "example.com", False, wrong, ORGS)
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.DMARC_UNALIGNED)
    assert found.summary == (
        "mail From example.com fails DMARC (p=reject at _dmarc.example.com): SPF does not "
        "pass for MAIL FROM example.com and the DKIM signature s=s1 d=example.com fails at the "
        "receiver: the published key record is missing or another key (see dkim.s1.example.com)"
    )
    assert found.fix.startswith(
        "publish the record `reputable keys dns example.com` prints for s=s1 "
        "(the dkim.s1.example.com finding says what is wrong), or send it with a MAIL FROM"
    )


def test_one_verifying_signature_of_two_is_enough() -> None:
    both = [
        DkimSignature("example.com", "e1", KeyRecord.WRONG),
        DkimSignature("example.com", "s1", KeyRecord.MATCHING),
    ]
    found = interpret_dmarc(lookup(), "example.com", False, both, ORGS)
    assert found.status is Status.OK
    assert "aligned by DKIM d=example.com (relaxed)" in found.summary


def test_a_wrong_record_does_not_matter_when_spf_aligns() -> None:
    found = interpret_dmarc(
        lookup(), "example.com", True, signed("example.com", KeyRecord.WRONG), ORGS
    )
    assert found.status is Status.OK
    assert "aligned by SPF for MAIL FROM example.com" in found.summary


def test_an_unchecked_record_with_spf_failing_cannot_tell() -> None:
    unknown = signed("example.com", KeyRecord.UNKNOWN)
    found = interpret_dmarc(lookup(), "example.com", False, unknown, ORGS)
    assert (found.status, found.outcome, found.ttl_s) == (Status.WARN, Outcome.DNS_ERROR, 900)
    assert found.summary == (
        "cannot tell whether mail From example.com passes DMARC (p=reject at _dmarc.example.com)"
        ": SPF does not pass for MAIL FROM example.com, and the key record of s=s1 "
        "d=example.com could not be checked"
    )
    assert found.fix == "see the dkim.s1.example.com finding"


def test_spf_aligned_relaxed_is_ok() -> None:
    found = interpret_dmarc(lookup(), "foo.example.com", True, [], ORGS)
    assert found.status is Status.OK
    assert "SPF for MAIL FROM foo.example.com (relaxed)" in found.summary


def test_both_unaligned_fails_and_says_why() -> None:
    found = interpret_dmarc(lookup(), "bounce.example.net", True, [], ORGS)
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.DMARC_UNALIGNED)
    assert found.summary == (
        "mail From example.com fails DMARC (p=reject at _dmarc.example.com): MAIL FROM "
        "bounce.example.net is not aligned with example.com (relaxed) and no DKIM signature of "
        "example.com (relaxed)"
    )
    assert "reputable keys new example.com" in found.fix


def test_spf_not_passing_does_not_align() -> None:
    found = interpret_dmarc(lookup(), "example.com", False, signed("example.net"), ORGS)
    assert found.status is Status.FAIL
    assert "SPF does not pass for MAIL FROM example.com" in found.summary
    assert "signed by example.net" in found.summary


def test_strict_modes_need_identical_domains() -> None:
    strict = lookup(from_domain="news.example.com", adkim="s", aspf="s")
    found = interpret_dmarc(strict, "foo.example.com", True, signed("example.com"), ORGS)
    assert found.status is Status.FAIL
    assert "(strict)" in found.summary and "MAIL FROM of news.example.com" in found.fix
    ok = interpret_dmarc(strict, "foo.example.com", True, signed("news.example.com"), ORGS)
    assert ok.status is Status.OK


def test_null_mail_from_cannot_align() -> None:
    found = interpret_dmarc(lookup(policy="none", testing=True), "", True, [], ORGS)
    assert found.status is Status.FAIL
    assert "null MAIL FROM" in found.summary and "p=none (t=y: testing)" in found.summary


def test_the_walks_org_domain_is_used_for_the_from_domain() -> None:
    # org_of knows nothing of news.example.com: the lookup's org domain stands in for it.
    found = interpret_dmarc(
        lookup(from_domain="news.example.com"), "bounce.example.com", True, [], lambda n: n[-11:]
    )
    assert found.status is Status.OK


def test_no_record_is_an_advisory_warning() -> None:
    found = interpret_dmarc(DmarcLookup(None, from_domain="example.com"), "", False, [], ORGS)
    assert (found.id, found.status, found.outcome) == ("dmarc.example.com", Status.WARN, None)
    assert "Gmail and Yahoo" in found.summary
    assert '"v=DMARC1; p=none; rua=mailto:dmarc-reports@example.com"' in found.fix


def test_ignored_record_says_why() -> None:
    ignored = DmarcLookup(None, from_domain="example.com", ignored="it is broken")
    found = interpret_dmarc(ignored, "", False, [], ORGS)
    assert (found.status, found.summary) == (Status.WARN, "it is broken")


def test_dns_error_is_a_dns_error_warning() -> None:
    failed = DmarcLookup(None, "cannot look up _dmarc.example.com: timeout", 60, "example.com")
    found = interpret_dmarc(failed, "example.com", True, signed("example.com"), ORGS)
    assert (found.status, found.outcome, found.ttl_s) == (Status.WARN, Outcome.DNS_ERROR, 60)


names = st.sampled_from(["example.com", "a.example.com", "example.net", "", "EXAMPLE.com."])
lookups = st.builds(
    DmarcLookup,
    policy=st.one_of(
        st.none(),
        st.builds(
            DmarcPolicy,
            from_domain=names,
            record_domain=names,
            policy=st.sampled_from(["none", "quarantine", "reject", "?"]),
            adkim=st.sampled_from(["r", "s", "x"]),
            aspf=st.sampled_from(["r", "s", "x"]),
            org_domain=names,
            testing=st.booleans(),
        ),
    ),
    error=st.sampled_from(["", "timeout"]),
    ttl_s=st.integers(min_value=0, max_value=86400),
    from_domain=names,
    ignored=st.sampled_from(["", "ignored"]),
)


signatures = st.builds(
    DkimSignature, domain=names, selector=st.just("s1"), record=st.sampled_from(KeyRecord)
)


@given(lookups, names, st.booleans(), st.lists(signatures, max_size=3), st.booleans())
def test_interpret_dmarc_never_raises_and_every_failure_gates(
    found_lookup: DmarcLookup,
    mail_from: str,
    spf_passed: bool,
    dkim: list[DkimSignature],
    relaxed_same: bool,
) -> None:
    def org_of(name: str) -> str:
        return "example.com" if relaxed_same else name

    found = interpret_dmarc(found_lookup, mail_from, spf_passed, dkim, org_of)
    assert found.id.startswith("dmarc.")
    if found.status is Status.FAIL:
        assert found.outcome is Outcome.DMARC_UNALIGNED
    if found_lookup.error:
        assert found.outcome is Outcome.DNS_ERROR
    if found.status is Status.OK and "aligned by DKIM" in found.summary:
        # Only a signature that verifies aligns.
        assert any(s.record is KeyRecord.MATCHING for s in dkim)


# --- query_dmarc / org_domain_of through a resolver (no sockets) ---


def test_query_dmarc_walks_up_and_stops_at_psd() -> None:
    zone = {
        ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject; sp=quarantine; psd=n"],
        ("news.example.com", "A"): ["192.0.2.1"],
    }
    resolver = FakeResolver(zone, ttl=1800)
    found = query_dmarc("a.news.example.com", resolver, 2.0)
    assert found == DmarcLookup(
        DmarcPolicy("a.news.example.com", "example.com", "quarantine", org_domain="example.com"),
        ttl_s=1800,
        from_domain="a.news.example.com",
    )
    assert resolver.asked == [
        ("_dmarc.a.news.example.com", "TXT"),
        ("_dmarc.news.example.com", "TXT"),
        ("_dmarc.example.com", "TXT"),  # psd=n: the walk stops; no np=, no existence query
    ]


def test_query_dmarc_asks_whether_the_author_domain_exists_for_np() -> None:
    zone = {
        ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=none; np=reject"],
        ("example.com", "A"): ["192.0.2.1"],
    }
    resolver = FakeResolver(zone)
    found = query_dmarc("ghost.example.com", resolver, 2.0)
    assert found.policy is not None and found.policy.policy == "reject"
    assert resolver.asked[-1] == ("ghost.example.com", "A")


def test_query_dmarc_of_a_long_name_makes_at_most_eight_queries() -> None:
    resolver = FakeResolver({})
    found = query_dmarc("a.b.c.d.e.f.g.h.i.j.mail.example.com", resolver, 2.0)
    assert found == DmarcLookup(None, from_domain="a.b.c.d.e.f.g.h.i.j.mail.example.com")
    assert len(resolver.asked) == 8


def test_query_dmarc_dns_trouble_is_an_error() -> None:
    resolver = FakeResolver({}, fail={"_dmarc.example.com": dns.exception.Timeout})
    found = query_dmarc("news.example.com", resolver, 2.0)
    assert (found.policy, found.ttl_s, found.from_domain) == (None, 60, "news.example.com")
    assert found.error == "cannot look up _dmarc.example.com: timeout: no answer within 2 s"
    assert query_dmarc("example.com", FakeResolver({}), 0.0).error.endswith("no answer within 0 s")


def test_org_domain_of_falls_back_to_the_name_on_dns_trouble() -> None:
    zone = {("_dmarc.example.com", "TXT"): [REJECT]}
    assert org_domain_of("Bounce.Example.com.", FakeResolver(zone), 2.0) == "example.com"
    failing = FakeResolver(zone, fail={"_dmarc.com": dns.resolver.NoNameservers})
    assert org_domain_of("bounce.example.com", failing, 2.0) == "bounce.example.com"


# --- interpret_dkim_record (checks/dkimdns.py) ---


def test_matching_key_record_is_ok() -> None:
    check = RecordCheck(DnsStatus.MATCHING, "ns1 (192.0.2.53:53) has our key")
    found = interpret_dkim_record("s2026", "example.com", check)
    assert (found.id, found.status, found.outcome) == ("dkim.s2026.example.com", Status.OK, None)
    assert found.summary == "s2026._domainkey.example.com: ns1 (192.0.2.53:53) has our key"


def test_matching_key_record_in_testing_mode_warns() -> None:
    check = RecordCheck(DnsStatus.MATCHING, "ns1 has our key, in testing mode (t=y)", True)
    found = interpret_dkim_record("s2026", "example.com", check)
    assert (found.status, found.outcome) == (Status.WARN, None)
    assert "t=y" in found.fix


@pytest.mark.parametrize(
    ("status", "words"),
    [(DnsStatus.MISSING, "is not published"), (DnsStatus.MISMATCH, "is wrong")],
)
def test_missing_or_wrong_key_record_fails_every_signature(status: DnsStatus, words: str) -> None:
    found = interpret_dkim_record("s2026", "example.com", RecordCheck(status, "ns1 has no key"))
    assert (found.status, found.outcome) == (Status.FAIL, Outcome.DKIM_RECORD)
    assert words in found.summary and "every signature with s=s2026" in found.summary
    assert "reputable keys dns example.com" in found.fix


def test_unreachable_servers_are_a_dns_error() -> None:
    check = RecordCheck(DnsStatus.ERROR, "ns1 failed: no answer within 2 s")
    found = interpret_dkim_record("s2026", "example.com", check)
    assert (found.status, found.outcome) == (Status.WARN, Outcome.DNS_ERROR)


def test_not_checked_warns() -> None:
    found = interpret_dkim_record("s", "example.com", RecordCheck(DnsStatus.NOT_CHECKED, ""))
    assert (found.status, found.outcome) == (Status.WARN, None)


@given(
    st.text(max_size=10),
    st.text(max_size=20),
    st.builds(
        RecordCheck,
        status=st.sampled_from(DnsStatus),
        detail=st.text(max_size=40),
        testing=st.booleans(),
    ),
)
def test_interpret_dkim_record_never_raises_and_every_failure_gates(
    selector: str, domain: str, check: RecordCheck
) -> None:
    found = interpret_dkim_record(selector, domain, check)
    assert found.id == f"dkim.{selector}.{domain}"
    if found.status is Status.FAIL:
        assert found.outcome is Outcome.DKIM_RECORD
    assert (found.status is Status.OK) == (check.status is DnsStatus.MATCHING and not check.testing)


@pytest.mark.parametrize(
    ("status", "testing", "expected"),
    [
        (DnsStatus.MATCHING, False, KeyRecord.MATCHING),
        (DnsStatus.MATCHING, True, KeyRecord.MATCHING),  # t=y: receivers still verify it
        (DnsStatus.MISMATCH, False, KeyRecord.WRONG),
        (DnsStatus.MISSING, False, KeyRecord.WRONG),
        (DnsStatus.ERROR, False, KeyRecord.UNKNOWN),
        (DnsStatus.NOT_CHECKED, False, KeyRecord.UNKNOWN),
    ],
)
def test_key_record_says_whether_the_signatures_verify(
    status: DnsStatus, testing: bool, expected: KeyRecord
) -> None:
    assert key_record(RecordCheck(status, "detail", testing)) is expected
