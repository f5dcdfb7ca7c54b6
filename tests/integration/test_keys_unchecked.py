"""`keys list` and `keys activate` when a key's record cannot be checked.

The commands run as an admin runs them (`python -m reputable`, a config
file, a key store on disk). The resolver is a server of its own that answers
NXDOMAIN for every name, the DNS root included, or one that never answers:
the record is then neither published nor missing, and the commands must say
why in our words and what to look at, never "publish its record".
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness.dnsserver import DnsServer

DOMAIN = "unchecked.example.com"
DNSPYTHON_WORDS = (
    "There is no SOA RR",
    "This should never happen",
    "The DNS query name does not exist",
    "All nameservers failed",
    "The resolution lifetime expired",
    "The DNS operation timed out",
)


@dataclass
class Keys:
    config: Path
    root: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "reputable", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def rows(self) -> dict[str, dict[str, object]]:
        done = self.run("keys", "list", "--json")
        assert done.returncode == 0, done.stderr
        assert_our_words(done.stdout)
        return {str(row["state"]): row for row in json.loads(done.stdout)["keys"]}

    def store(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): p.read_text() for p in self.root.rglob("*.toml")}


def assert_our_words(text: str) -> None:
    assert not [words for words in DNSPYTHON_WORDS if words in text], text


def make_keys(tmp_path: Path, resolver: DnsServer, verify: DnsServer | None) -> Keys:
    """An active key and a pending one (a rotation waiting for its record)."""
    root = tmp_path / "keys"
    config = tmp_path / "reputable.toml"
    verify_line = 'verify_nameservers = ["{}:{}"]\n'.format(*verify.address) if verify else ""
    config.write_text(
        f'[signing]\ndomains = ["{DOMAIN}"]\nkeys = "{root}"\n'
        '[dns]\nnameservers = ["{}:{}"]\ntimeout = "1s"\n'.format(*resolver.address)
        + f"[keys]\n{verify_line}"
    )
    keys = Keys(config, root)
    for command in ("new", "rotate"):
        done = keys.run("keys", command, DOMAIN)
        assert done.returncode == 0, done.stdout + done.stderr
    return keys


def test_a_record_the_resolver_cannot_find_says_why_and_to_check_the_resolver(
    tmp_path: Path, nxdomain_dns: DnsServer
) -> None:
    keys = make_keys(tmp_path, nxdomain_dns, None)
    rows = keys.rows()
    pending, active = rows["pending"], rows["active"]
    assert pending["dns"] == "error"
    assert str(pending["dns_detail"]).startswith(f"cannot find the zone of {pending['selector']}.")
    assert "resolver denies the root: no SOA at the DNS root" in str(pending["dns_detail"])
    step = str(pending["next"])
    assert step.startswith("could not find the domain's name servers (cannot find the zone of")
    assert "check [dns] nameservers or the network" in step
    assert step.endswith(f"then `reputable keys activate {DOMAIN}`")
    assert "publish" not in step
    warnings = active["warnings"]
    assert isinstance(warnings, list)
    assert [w for w in warnings if w.startswith("signing, but its record could not be checked")]

    listing = keys.run("keys", "list")
    assert listing.returncode == 0
    assert_our_words(listing.stdout)
    assert f"    next: {step}" in listing.stdout.splitlines()
    assert "next: publish its record" not in listing.stdout

    before = keys.store()
    activated = keys.run("keys", "activate", DOMAIN)
    assert activated.returncode == 1
    assert_our_words(activated.stdout + activated.stderr)
    assert f"{pending['selector']} (rsa-sha256) stays pending: could not find the domain's" in (
        activated.stdout
    )
    assert "its DNS record is error" not in activated.stdout
    assert keys.store() == before  # nothing activated


def test_name_servers_that_never_answer_say_so_and_point_at_verify_nameservers(
    tmp_path: Path, nxdomain_dns: DnsServer, silent_dns: DnsServer
) -> None:
    keys = make_keys(tmp_path, nxdomain_dns, silent_dns)
    pending = keys.rows()["pending"]
    assert pending["dns"] == "error"
    server = "{}:{}".format(*silent_dns.address)
    assert pending["dns_detail"] == f"{server} failed: no answer within 1 s"
    assert pending["next"] == (
        f"could not reach the domain's name servers ({server} failed: no answer within 1 s): "
        f"check [keys] verify_nameservers or the network; then `reputable keys activate {DOMAIN}`"
    )
    activated = keys.run("keys", "activate", DOMAIN)
    assert activated.returncode == 1
    assert "stays pending: could not reach the domain's name servers" in activated.stdout


@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED"])
def test_a_failing_zone_lookup_is_the_rcode_not_dnspython_s_sentence(
    tmp_path: Path, nxdomain_dns: DnsServer, rcode: str
) -> None:
    nxdomain_dns.set_records(".", "NS", ["a.root-servers.test."])  # a resolver that works...
    keys = make_keys(tmp_path, nxdomain_dns, None)
    selector = keys.rows()["pending"]["selector"]
    nxdomain_dns.set_rcode(f"{selector}._domainkey.{DOMAIN}", rcode)  # ...but fails this name
    pending = keys.rows()["pending"]
    assert (
        pending["dns_detail"] == f"cannot find the zone of {selector}._domainkey.{DOMAIN}: {rcode}"
    )
