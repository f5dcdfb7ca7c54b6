"""`reputable check` against real DNS scenarios: the checklist, its JSON, its exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from reputable.signing.algorithm import Algorithm
from tests.integration.daemon import free_port
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.sink import SmtpSink

DOMAIN = "check.example.com"
IP = "203.0.113.11"
HELO = f"mail.{DOMAIN}"
PTR_NAME = "11.113.0.203.in-addr.arpa"


def run_check(config: Path) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "reputable", "check", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), elapsed


def by_id(report: dict[str, object]) -> dict[str, dict[str, str]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {c["id"]: c for c in checks}


def write_config(path: Path, keys: Path, nameserver: str, port25: str) -> None:
    path.write_text(
        f'[signing]\ndomains = ["{DOMAIN}"]\nkeys = "{keys}"\n'
        f'[host]\nsending_ips = ["{IP}"]\nhelo_name = "{HELO}"\n'
        f'[checks]\ndnsbl = ["zen.spamhaus.org", "bl.example.test"]\n'
        f'port25_target = "{port25}"\nport25_timeout = "2s"\n'
        f'[dns]\nnameservers = ["{nameserver}"]\ntimeout = "1s"\n'
        f'[keys]\nverify_nameservers = ["{nameserver}"]\n'
    )


@pytest.fixture
def setup(dns_server: DnsServer, tmp_path: Path) -> Iterator[Path]:
    """A host in good standing, and a config asking only our DNS server; port 25 reaches a local sink."""
    keys = tmp_path / "keys"
    assert (
        new_command(
            Config(signing=SigningConfig(keys=keys)),
            DOMAIN,
            "c1",
            "rsa",
            2048,
            False,
            out=io.StringIO(),
        )
        == 0
    )
    (stored,) = read_store(keys).keys
    dns_server.set_records(".", "NS", ["root.example."])
    dns_server.set_ptr(IP, HELO)
    dns_server.set_a(HELO, IP)
    dns_server.set_mx(DOMAIN, (10, HELO))
    dns_server.set_txt(DOMAIN, f"v=spf1 ip4:{IP} -all")
    dns_server.set_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; rua=mailto:dmarc@check.example.com")
    dns_server.set_txt(
        record_name("c1", DOMAIN),
        *split_strings(record_value(stored.key.algorithm, stored.key.private_key)),
    )
    with SmtpSink() as sink:
        config = tmp_path / "reputable.toml"
        write_config(
            config, keys, "{}:{}".format(*dns_server.address), "{}:{}".format(*sink.address)
        )
        yield config
    dns_server.remove(".")
    for name in (
        HELO,
        DOMAIN,
        f"_dmarc.{DOMAIN}",
        record_name("c1", DOMAIN),
        PTR_NAME,
        "11.113.0.203.bl.example.test",
    ):
        dns_server.remove(name)


def test_a_host_in_good_standing_passes_every_check(setup: Path) -> None:
    code, report, _ = run_check(setup)
    checks = by_id(report)
    not_ok = {i: c for i, c in checks.items() if c["status"] != "ok"}
    assert not_ok == {}
    assert code == 0
    assert report["status"] == "ok"
    families = {i.split(".", 1)[0] for i in checks}
    assert families >= {
        "dns",
        "host",
        "static_ip",
        "ptr",
        "helo",
        "port25",
        "dnsbl",
        "spf",
        "dkim",
        "dmarc",
        "mx",
    }


def test_a_listed_host_fails_with_the_fix(setup: Path, dns_server: DnsServer) -> None:
    dns_server.set_a("11.113.0.203.bl.example.test", "127.0.0.2")
    dns_server.set_txt("11.113.0.203.bl.example.test", "listed: see https://bl.example.test/")
    code, report, _ = run_check(setup)
    listed = by_id(report)[f"dnsbl.bl.example.test.{IP}"]
    assert code == 2
    assert report["status"] == "fail"
    assert listed["status"] == "fail"
    assert "127.0.0.2" in listed["summary"]
    assert listed["fix"]


def test_a_missing_ptr_and_dkim_record_are_named(setup: Path, dns_server: DnsServer) -> None:
    dns_server.remove(PTR_NAME)
    dns_server.remove(record_name("c1", DOMAIN))
    code, report, _ = run_check(setup)
    checks = by_id(report)
    assert code == 2
    assert checks[f"ptr.{IP}"]["status"] == "fail"
    assert checks[f"dkim.c1.{DOMAIN}"]["status"] == "fail"


def test_a_helo_name_that_resolves_but_is_not_the_ptr_name_warns(
    setup: Path, dns_server: DnsServer
) -> None:
    ptr_name = f"mx.{DOMAIN}"
    dns_server.set_ptr(IP, ptr_name)  # forward-confirmed, but not the HELO name
    dns_server.set_a(ptr_name, IP)
    try:
        code, report, _ = run_check(setup)
    finally:
        dns_server.remove(ptr_name)
    checks = by_id(report)
    helo = checks[f"helo.{IP}"]
    assert checks[f"ptr.{IP}"]["status"] == "ok"
    assert helo["status"] == "warn"
    assert f"HELO says {HELO}: it resolves to {IP} but is not the PTR name" in helo["summary"]
    assert f"smtp_helo_name (and [host] helo_name, if set) to {ptr_name}" in helo["fix"]
    assert f"the PTR of {IP} changed to {HELO}" in helo["fix"]
    assert {i for i, c in checks.items() if c["status"] != "ok"} == {f"helo.{IP}"}
    assert code == 1


def test_dmarc_does_not_count_a_signature_whose_record_is_another_key(
    setup: Path, dns_server: DnsServer
) -> None:
    # c1._domainkey publishes another key, and SPF fails: receivers reject under p=reject.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_record = record_value(Algorithm.RSA_SHA256, other)
    dns_server.set_txt(record_name("c1", DOMAIN), *split_strings(other_record))
    dns_server.set_txt(DOMAIN, "v=spf1 ip4:198.51.100.1 -all")
    code, report, _ = run_check(setup)
    checks = by_id(report)
    assert checks[f"dkim.c1.{DOMAIN}"]["status"] == "fail"
    dmarc = checks[f"dmarc.{DOMAIN}"]
    assert dmarc["status"] == "fail"
    assert "aligned by DKIM" not in dmarc["summary"]
    assert f"fails DMARC (p=reject at _dmarc.{DOMAIN})" in dmarc["summary"]
    assert f"the DKIM signature s=c1 d={DOMAIN} fails at the receiver" in dmarc["summary"]
    assert f"`reputable keys dns {DOMAIN}` prints for s=c1" in dmarc["fix"]
    assert code == 2


DQS_KEY = "abcdefghijklmnopqrstuvwxyz"
DQS = f"{DQS_KEY}.zen.dq.spamhaus.net"
DQS_SHOWN = "<key>.zen.dq.spamhaus.net"  # the key is a secret: never in ids or logs
MIRROR = "zen.mirror.example.net"  # a local copy of ZEN under a name of its own


def test_spamhaus_codes_are_read_on_a_dqs_zone_and_on_a_mirror_given_its_kind(
    setup: Path, dns_server: DnsServer
) -> None:
    text, written = setup.read_text(), 'dnsbl = ["zen.spamhaus.org", "bl.example.test"]'
    assert written in text
    lists = f'dnsbl = ["{DQS}", {{ zone = "{MIRROR}", kind = "spamhaus-zen" }}]'
    setup.write_text(text.replace(written, lists))
    dqs, mirror = f"11.113.0.203.{DQS}", f"11.113.0.203.{MIRROR}"
    dns_server.set_a(dqs, "127.255.255.254")
    dns_server.set_a(mirror, "127.0.0.11")
    try:
        code, report, _ = run_check(setup)
        dns_server.set_a(dqs, "127.0.0.11")
        dns_server.remove(mirror)
        code_again, report_again, _ = run_check(setup)
    finally:
        dns_server.remove(dqs)
        dns_server.remove(mirror)

    checks = by_id(report)
    error = checks[f"dnsbl.{DQS_SHOWN}.{IP}"]
    assert error["status"] == "warn"
    assert "answered 127.255.255.254" in error["summary"] and "not a listing" in error["summary"]
    listed = checks[f"dnsbl.{MIRROR}.{IP}"]
    assert listed["status"] == "fail"
    assert "127.0.0.11 PBL Spamhaus-maintained" in listed["summary"]
    assert "dynamic/end-user address space" in listed["summary"]
    assert checks[f"static_ip.{IP}"]["status"] == "fail"
    assert code == 2

    checks = by_id(report_again)
    pbl = checks[f"dnsbl.{DQS_SHOWN}.{IP}"]
    assert pbl["status"] == "fail" and "Policy Block List" in pbl["summary"]
    assert checks[f"dnsbl.{MIRROR}.{IP}"]["status"] == "ok"
    static = checks[f"static_ip.{IP}"]
    assert static["status"] == "fail" and f"on {DQS_SHOWN}" in static["summary"]
    assert code_again == 2
    assert DQS_KEY not in json.dumps([report, report_again])


def test_unreachable_dns_is_said_once_and_quickly(setup: Path) -> None:
    dead = free_port()  # nothing listens there: every query times out
    write_config(setup, setup.parent / "keys", f"127.0.0.1:{dead}", f"127.0.0.1:{free_port()}")
    code, report, elapsed = run_check(setup)
    checks = by_id(report)
    assert code == 3  # could not check
    assert checks["dns"]["status"] == "fail"
    assert "does not answer" in checks["dns"]["summary"]
    assert next(iter(checks)) == "dns"  # said first
    assert elapsed < 60


# --- DNS that cannot be trusted ---

# dnspython's own words, which must never reach an admin.
DNSPYTHON_WORDS = (
    "There is no SOA RR",
    "This should never happen",
    "The DNS query name does not exist",
    "All nameservers failed",
    "The resolution lifetime expired",
    "The DNS operation timed out",
)
# Every row family that is an answer of the record resolver or the DNSBL resolver.
RECORD_FAMILIES = {"ptr", "ptr_generic", "helo", "spf", "dkim", "dmarc", "mx"}
DNSBL_FAMILIES = {"dnsbl", "static_ip"}


def set_line(config: Path, key: str, value: str | None, after: str = "") -> None:
    """Replace the `key = ...` line of the config `setup` wrote (None: drop it).

    A key not there yet goes after the `after = ...` line (its section).
    """
    lines = config.read_text().splitlines()
    found = [i for i, line in enumerate(lines) if line.startswith(f"{key} = ")]
    if found:
        at = found[0]
        del lines[at]
    else:
        at = 1 + next(i for i, line in enumerate(lines) if line.startswith(f"{after} = "))
    if value is not None:
        lines.insert(at, f"{key} = {value}")
    config.write_text("\n".join(lines) + "\n")


def family(row_id: str) -> str:
    return row_id.split(".", 1)[0]


def assert_no_dnspython_words(report: dict[str, object]) -> None:
    text = json.dumps(report)
    assert not [words for words in DNSPYTHON_WORDS if words in text], text


@pytest.mark.parametrize(
    ("server", "said"),
    [
        ("nxdomain_dns", "says the DNS root does not exist (NXDOMAIN)"),
        ("silent_dns", "DNS does not answer"),
    ],
)
def test_dns_that_cannot_be_trusted_makes_every_row_resting_on_it_unknown(
    setup: Path, request: pytest.FixtureRequest, server: str, said: str
) -> None:
    broken: DnsServer = request.getfixturevalue(server)
    set_line(setup, "nameservers", '["{}:{}"]'.format(*broken.address))
    set_line(setup, "verify_nameservers", None)  # the key records are found through it too
    code, report, elapsed = run_check(setup)
    rows = report["checks"]
    assert isinstance(rows, list)
    assert (rows[0]["id"], rows[0]["status"]) == ("dns", "fail")
    assert said in rows[0]["summary"] and rows[0]["fix"]
    needs_dns = RECORD_FAMILIES | DNSBL_FAMILIES
    resting = {r["id"]: r["status"] for r in rows if family(r["id"]) in needs_dns}
    assert {family(i) for i in resting} >= RECORD_FAMILIES - {"ptr_generic"} | DNSBL_FAMILIES
    assert set(resting.values()) == {"unknown"}, resting
    assert [r["id"] for r in rows if family(r["id"]) == "dns"] == ["dns"]  # said once
    assert by_id(report)["port25"]["status"] == "ok"  # needs no DNS: still known
    assert report["status"] == "unknown"
    assert code == 3
    assert_no_dnspython_words(report)
    assert broken.queries  # the resolver was really asked
    assert elapsed < 60


def test_a_separate_dnsbl_resolver_that_cannot_be_trusted_makes_the_blocklist_rows_unknown(
    setup: Path, nxdomain_dns: DnsServer
) -> None:
    address = '["{}:{}"]'.format(*nxdomain_dns.address)
    set_line(setup, "dnsbl_nameservers", address, after="nameservers")
    code, report, _ = run_check(setup)
    rows = report["checks"]
    assert isinstance(rows, list)
    assert [(r["id"], r["status"]) for r in rows[:2]] == [("dns", "ok"), ("dns.dnsbl", "fail")]
    assert "[dns] dnsbl_nameservers" in rows[1]["summary"]
    statuses = {r["id"]: r["status"] for r in rows[2:]}
    blocklist = {i: s for i, s in statuses.items() if family(i) in DNSBL_FAMILIES}
    assert blocklist and set(blocklist.values()) == {"unknown"}
    # The record resolver sees the root: its rows stand.
    assert statuses[f"ptr.{IP}"] == statuses[f"spf.{DOMAIN}.{IP}"] == "ok"
    assert code == 3


def test_a_host_with_no_spamhaus_zone_is_clean_static_ip_unknown(setup: Path) -> None:
    set_line(setup, "dnsbl", '["bl.example.test"]')
    code, report, _ = run_check(setup)
    checks = by_id(report)
    static = checks[f"static_ip.{IP}"]
    assert static["status"] == "unknown"
    assert "cannot tell whether" in static["summary"]
    assert {i for i, c in checks.items() if c["status"] != "ok"} == {f"static_ip.{IP}"}
    assert report["status"] == "ok"
    assert code == 0


def test_resolver_failures_are_said_in_our_words(setup: Path, dns_server: DnsServer) -> None:
    set_line(setup, "verify_nameservers", None)  # the DKIM record's zone is looked for
    dkim_name = record_name("c1", DOMAIN)
    dns_server.set_rcode(DOMAIN, "SERVFAIL")
    dns_server.set_rcode(dkim_name, "REFUSED")
    try:
        code, report, _ = run_check(setup)
    finally:
        dns_server.set_rcode(DOMAIN, None)
        dns_server.set_rcode(dkim_name, None)
    checks = by_id(report)
    assert_no_dnspython_words(report)
    assert checks["dns"]["status"] == "ok"
    assert "SERVFAIL" in checks[f"spf.{DOMAIN}.{IP}"]["summary"]
    assert "SERVFAIL" in checks[f"mx.{DOMAIN}"]["summary"]
    dkim = checks[f"dkim.c1.{DOMAIN}"]
    assert dkim["status"] == "warn"
    assert dkim["summary"].endswith(f"cannot find the zone of {dkim_name}: REFUSED")
    assert code == 1
