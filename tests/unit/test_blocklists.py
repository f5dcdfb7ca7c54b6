"""The kinds of DNS blocklist: a zone's kind from its name or the config, and each kind's codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reputable.checks.blocklists import (
    DnsblKind,
    DnsblZone,
    kind_of_zone,
    meaning_of,
    shown_zone,
)
from reputable.checks.dnsbl import DnsblAnswer, interpret_dnsbl, interpret_static_ip
from reputable.checks.findings import Outcome, Status
from reputable.config import DEFAULT_DNSBLS, ChecksConfig, parse_config
from reputable.errors import EX_CONFIG, ConfigError

IP = "203.0.113.5"
KEY = "abcdefghijklmnopqrstuvwxyz"  # a DQS key is 26 characters
MIRROR = "zen.mirror.example.net"  # a local rsync mirror: its name says nothing


@pytest.mark.parametrize(
    ("zone", "kind"),
    [
        ("zen.spamhaus.org", DnsblKind.SPAMHAUS_ZEN),
        ("ZEN.Spamhaus.org.", DnsblKind.SPAMHAUS_ZEN),
        ("pbl.spamhaus.org", DnsblKind.SPAMHAUS_PBL),
        ("sbl-xbl.spamhaus.org", DnsblKind.SPAMHAUS_SBL_XBL),
        ("dbl.spamhaus.org", DnsblKind.SPAMHAUS_DBL),
        (f"{KEY}.zen.dq.spamhaus.net", DnsblKind.SPAMHAUS_ZEN),
        (f"{KEY}.pbl.dq.spamhaus.net", DnsblKind.SPAMHAUS_PBL),
        (f"{KEY}.sbl.dq.spamhaus.net", DnsblKind.SPAMHAUS_SBL),
        (f"{KEY}.xbl.dq.spamhaus.net", DnsblKind.SPAMHAUS_XBL),
        (f"{KEY}.authbl.dq.spamhaus.net", DnsblKind.SPAMHAUS_AUTHBL),
        (f"{KEY}.dbl.dq.spamhaus.net", DnsblKind.SPAMHAUS_DBL),
        (f"{KEY}.zrd.dq.spamhaus.net", DnsblKind.SPAMHAUS_ZRD),
        ("bl.spamcop.net", DnsblKind.SPAMCOP),
        ("psbl.surriel.com", DnsblKind.GENERIC),
        (MIRROR, DnsblKind.GENERIC),
        ("zen.spamhaus.org.example.net", DnsblKind.GENERIC),  # only the real names
        ("zen.dq.spamhaus.net", DnsblKind.GENERIC),  # no key: not a DQS zone
        ("unknown.spamhaus.org", DnsblKind.GENERIC),
    ],
)
def test_the_kind_of_a_zone_from_its_name(zone: str, kind: DnsblKind) -> None:
    assert kind_of_zone(zone) is kind


def test_only_spamhaus_zen_and_pbl_answer_the_static_ip_question() -> None:
    assert {k for k in DnsblKind if k.answers_pbl} == {
        DnsblKind.SPAMHAUS_ZEN,
        DnsblKind.SPAMHAUS_PBL,
    }


def test_codes_mean_what_each_list_publishes() -> None:
    zen, sbl, spamcop = DnsblKind.SPAMHAUS_ZEN, DnsblKind.SPAMHAUS_SBL, DnsblKind.SPAMCOP
    assert meaning_of("127.0.0.2", zen) == "SBL spam source"
    assert meaning_of("127.0.0.4", zen) == "XBL exploited host"
    assert meaning_of("127.0.0.9", zen) == "DROP hijacked network"
    assert meaning_of("127.0.0.11", zen) == "PBL Spamhaus-maintained"
    assert meaning_of("127.0.0.11", sbl) == ""  # the SBL has no PBL codes
    assert meaning_of("127.0.1.2", DnsblKind.SPAMHAUS_DBL) == "DBL low-reputation domain"
    assert meaning_of("127.0.0.2", spamcop) == "SpamCop reported spam source"
    assert meaning_of("127.0.0.2", DnsblKind.GENERIC) == ""


# --- answers read by the kind of their list ---


def answer(zone: str, *codes: str, kind: DnsblKind | None = None) -> DnsblAnswer:
    return DnsblAnswer(zone, IP, codes, kind=kind)


@pytest.mark.parametrize(
    "zone",
    [
        DnsblZone(MIRROR, DnsblKind.SPAMHAUS_ZEN),
        DnsblZone(MIRROR, DnsblKind.SPAMHAUS_PBL),
        DnsblZone.named(f"{KEY}.zen.dq.spamhaus.net"),
        DnsblZone.named(f"{KEY}.pbl.dq.spamhaus.net"),
    ],
)
def test_pbl_codes_on_any_spamhaus_zen_or_pbl_zone_mean_no_static_ip(zone: DnsblZone) -> None:
    found = answer(zone.zone, "127.0.0.11", kind=zone.kind)
    listing = interpret_dnsbl(found)
    assert (listing.status, listing.outcome) == (Status.FAIL, Outcome.DNSBL)
    assert "Policy Block List" in listing.summary and "127.0.0.11 PBL" in listing.summary
    assert "check.spamhaus.org" in listing.fix
    static = interpret_static_ip(IP, [found])
    assert (static.id, static.status, static.outcome) == (f"static_ip.{IP}", Status.FAIL, None)


def test_a_mirror_whose_kind_is_not_given_is_a_generic_list() -> None:
    found = answer(MIRROR, "127.0.0.11")
    listing = interpret_dnsbl(found)
    assert listing.status is Status.FAIL
    assert "Policy Block List" not in listing.summary and "PBL" not in listing.summary
    assert "check.spamhaus.org" not in listing.fix
    assert interpret_static_ip(IP, [found]).status is not Status.FAIL


def test_a_pbl_code_on_a_list_that_is_no_pbl_is_a_plain_listing() -> None:
    found = answer(MIRROR, "127.0.0.10", kind=DnsblKind.SPAMHAUS_SBL)
    listing = interpret_dnsbl(found)
    assert listing.status is Status.FAIL and "Policy Block List" not in listing.summary
    assert interpret_static_ip(IP, [found]).status is not Status.FAIL


@pytest.mark.parametrize("kind", list(DnsblKind))
@pytest.mark.parametrize("code", ["127.255.255.252", "127.255.255.254", "127.255.255.255"])
def test_error_codes_are_errors_on_every_kind(kind: DnsblKind, code: str) -> None:
    finding = interpret_dnsbl(answer(MIRROR, code, kind=kind))
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "not a listing" in finding.summary


def test_a_dqs_zone_answering_the_public_resolver_code_is_an_error() -> None:
    dqs = f"{KEY}.zen.dq.spamhaus.net"
    finding = interpret_dnsbl(answer(dqs, "127.255.255.254"))
    assert (finding.status, finding.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "public/open resolver" in finding.summary
    static = interpret_static_ip(IP, [answer(dqs, "127.255.255.254")])
    assert static.status is not Status.OK and static.status is not Status.FAIL


def test_a_domain_list_asked_about_an_ip_is_an_error_on_spamhaus_kinds_only() -> None:
    spamhaus = interpret_dnsbl(answer(MIRROR, "127.0.1.255", kind=DnsblKind.SPAMHAUS_DBL))
    assert (spamhaus.status, spamhaus.outcome) == (Status.WARN, Outcome.DNS_ERROR)
    assert "dnsbl_domains" in spamhaus.fix
    generic = interpret_dnsbl(answer(MIRROR, "127.0.1.255", kind=DnsblKind.GENERIC))
    assert generic.status is Status.FAIL


def test_spamcop_listings_point_at_its_own_delisting() -> None:
    finding = interpret_dnsbl(answer(MIRROR, "127.0.0.2", kind=DnsblKind.SPAMCOP))
    assert "127.0.0.2 SpamCop reported spam source" in finding.summary
    assert "SpamCop delists by itself" in finding.fix


# --- [checks] dnsbl in the configuration ---


def test_entries_are_zone_names_or_zone_and_kind_tables() -> None:
    config = parse_config(
        {
            "checks": {
                "dnsbl": [
                    "zen.spamhaus.org",
                    f"{KEY}.PBL.dq.spamhaus.net.",
                    {"zone": MIRROR, "kind": "spamhaus-zen"},
                    {"zone": "bl.mirror.example.net"},
                ],
                "dnsbl_domains": [{"zone": "dbl.mirror.example.net", "kind": "spamhaus-dbl"}],
            }
        },
        "r.toml",
    )
    assert config.checks.dnsbl == (
        DnsblZone("zen.spamhaus.org", DnsblKind.SPAMHAUS_ZEN),
        DnsblZone(f"{KEY}.pbl.dq.spamhaus.net", DnsblKind.SPAMHAUS_PBL),
        DnsblZone(MIRROR, DnsblKind.SPAMHAUS_ZEN),
        DnsblZone("bl.mirror.example.net", DnsblKind.GENERIC),
    )
    assert config.checks.dnsbl_domains == (
        DnsblZone("dbl.mirror.example.net", DnsblKind.SPAMHAUS_DBL),
    )


def test_the_default_lists_are_read_by_their_names() -> None:
    assert ChecksConfig().dnsbl == DEFAULT_DNSBLS
    assert [(z.zone, z.kind) for z in DEFAULT_DNSBLS] == [
        ("zen.spamhaus.org", DnsblKind.SPAMHAUS_ZEN),
        ("bl.spamcop.net", DnsblKind.SPAMCOP),
        ("psbl.surriel.com", DnsblKind.GENERIC),
    ]


KINDS = "one of " + ", ".join(f'"{kind.value}"' for kind in DnsblKind)
ENTRY = 'a zone name such as "zen.spamhaus.org", or { zone = "...", kind = "..." }'


@pytest.mark.parametrize(
    ("entry", "key", "shown", "allowed"),
    [
        ({"zone": MIRROR, "kind": "zen"}, "checks.dnsbl[1].kind", '"zen"', KINDS),
        ({"zone": MIRROR, "kind": 2}, "checks.dnsbl[1].kind", "2", KINDS),
        (
            {"zone": "not a zone", "kind": "spamhaus-zen"},
            "checks.dnsbl[1].zone",
            '"not a zone"',
            "",
        ),
        ({"kind": "spamhaus-zen"}, "checks.dnsbl[1]", '{ kind = "spamhaus-zen" }', ENTRY),
        (
            {"zone": MIRROR, "type": "zen"},
            "checks.dnsbl[1]",
            f'{{ zone = "{MIRROR}", type = "zen" }}',
            ENTRY,
        ),
        (7, "checks.dnsbl[1]", "7", ENTRY),
        ("bad zone", "checks.dnsbl[1]", '"bad zone"', ""),
    ],
)
def test_a_bad_entry_is_named_with_its_place_value_and_what_is_allowed(
    entry: object, key: str, shown: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"checks": {"dnsbl": ["zen.spamhaus.org", entry]}}, "/etc/r.toml")
    (problem,) = caught.value.problems
    assert (problem.source, problem.key, problem.value) == ("/etc/r.toml", key, shown)
    assert problem.allowed.startswith("expected ")
    assert problem.allowed.endswith(allowed or 'a domain name such as "example.com"')


def test_not_a_list_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"checks": {"dnsbl_domains": "dbl.spamhaus.org"}}, "r.toml")
    (problem,) = caught.value.problems
    assert (problem.key, problem.value) == ("checks.dnsbl_domains", '"dbl.spamhaus.org"')
    assert "a list" in problem.allowed


def test_the_daemon_refuses_a_bad_kind_with_exit_78(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[checks]\ndnsbl = [{{ zone = "{MIRROR}", kind = "zen" }}]\n')
    done = subprocess.run(
        [sys.executable, "-m", "reputable", "milter", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EX_CONFIG
    assert "Traceback" not in done.stderr
    assert f'{path}: checks.dnsbl[0].kind = "zen": expected one of "spamhaus-zen"' in done.stderr


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("k3y9abc.zen.dq.spamhaus.net", "<key>.zen.dq.spamhaus.net"),
        ("K3Y9ABC.dbl.dq.spamhaus.net.", "<key>.dbl.dq.spamhaus.net"),
        ("zen.spamhaus.org", "zen.spamhaus.org"),
        ("bl.spamcop.net", "bl.spamcop.net"),
    ],
)
def test_a_dqs_key_is_never_shown(zone: str, shown: str) -> None:
    assert shown_zone(zone) == shown
    assert kind_of_zone(shown) is kind_of_zone(zone)
