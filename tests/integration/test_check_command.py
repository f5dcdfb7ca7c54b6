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

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
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


def test_unreachable_dns_is_said_once_and_quickly(setup: Path) -> None:
    dead = free_port()  # nothing listens there: every query times out
    write_config(setup, setup.parent / "keys", f"127.0.0.1:{dead}", f"127.0.0.1:{free_port()}")
    code, report, elapsed = run_check(setup)
    checks = by_id(report)
    assert code == 2
    assert checks["dns"]["status"] == "fail"
    assert "does not answer" in checks["dns"]["summary"]
    assert next(iter(checks)) == "dns"  # said first
    assert elapsed < 60
