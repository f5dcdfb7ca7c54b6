"""The keys commands say only what will happen, and refuse before they change anything.

Each command runs as an admin runs it (`python -m reputable`, a config file,
the key store on disk); DNS answers come from the session's DNS server, and
`reputable sign` shows what the keys really do to a message.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from reputable.log import parse_logfmt
from tests.integration.daemon import free_port
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.hostname import HOSTS, without_domain

DOMAIN = "promise.example.com"
OTHER = "other.example.net"  # a domain the config does not sign
TSIG_KEY = 'key "promise-test" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";\n};\n'


@dataclass
class Store:
    root: Path
    config: Path
    dns: DnsServer
    settings: str  # the config file's text

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reputable", *args, "--config", str(self.config)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def write(self, *, domains: str = f'["{DOMAIN}"]', signing: str = "") -> None:
        """The config file, with these [signing] domains and more [signing] lines."""
        self.config.write_text(self.settings.replace("DOMAINS", domains).replace("MORE\n", signing))

    def keys_json(self) -> dict[str, dict[str, object]]:
        done = self.run("keys", "list", "--json")
        assert done.returncode == 0, done.stderr
        return {f"{k['domain']}/{k['selector']}": k for k in json.loads(done.stdout)["keys"]}

    def sign(self, author_domain: str) -> tuple[list[str], dict[str, str]]:
        """`reputable sign` on a message from `author_domain`: each signature's a=, d=, s=; the log."""
        message = f"From: a@{author_domain}\r\nTo: b@example.org\r\nSubject: t\r\n\r\nHi.\r\n"
        done = self.run("sign", stdin=message)
        assert done.returncode == 0, done.stderr
        signed = []
        for value in email.message_from_string(done.stdout).get_all("DKIM-Signature", []):
            tags = dict(t.strip().split("=", 1) for t in "".join(value.split()).split(";") if t)
            signed.append(f"a={tags['a']} d={tags['d']} s={tags['s']}")
        (line,) = [parse_logfmt(x) for x in done.stderr.splitlines() if "action=" in x]
        return signed, line


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every file and directory of the store, byte for byte, with its metadata."""
    found: dict[str, tuple[object, ...]] = {}
    for path in sorted([root, *root.rglob("*")]):
        info = path.lstat()
        data = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (
            data,
            info.st_mode,
            info.st_uid,
            info.st_gid,
            info.st_size,
            info.st_mtime_ns,
            info.st_ctime_ns,
        )
    return found


@pytest.fixture
def store(dns_server: DnsServer, tmp_path: Path) -> Iterator[Store]:
    """DOMAIN signs with RSA key s1, whose record the DNS serves."""
    host, port = dns_server.address
    root = tmp_path / "keys"
    settings = (
        f'[signing]\ndomains = DOMAINS\nkeys = "{root}"\nMORE\n'
        f'[dns]\nnameservers = ["{host}:{port}"]\ntimeout = "1s"\n'
        f'[keys]\nverify_nameservers = ["{host}:{port}"]\n'
        '[log]\nlevel = "info"\n'
    )
    world = Store(root, tmp_path / "reputable.toml", dns_server, settings)
    world.write()
    made = world.run("keys", "new", DOMAIN, "--selector", "s1")
    assert made.returncode == 0, made.stderr
    (stored,) = read_store(root).keys
    value = record_value(stored.key.algorithm, stored.key.private_key)
    dns_server.set_txt(record_name("s1", DOMAIN), *split_strings(value))
    assert world.run("keys", "activate").returncode == 0  # as used: with its lock file
    yield world
    for name in (record_name("s1", DOMAIN), record_name("n1", OTHER), record_name("e1", DOMAIN)):
        dns_server.remove(name)


# --- item 8: a key that will not sign is not said to sign ---


def test_a_key_for_a_domain_not_signed_says_so_and_names_the_line_that_signs(
    store: Store,
) -> None:
    done = store.run("keys", "new", OTHER, "--selector", "n1")
    assert done.returncode == 0, done.stderr
    assert "from now on" not in done.stdout
    assert f"active, but it does not sign: {OTHER} is not in [signing] domains." in done.stdout
    setting = f'domains = ["{DOMAIN}", "{OTHER}"]'
    assert f"set in the [signing] section of {store.config}:\n    {setting}\n" in done.stdout
    # What was said is what happens: the mail goes unsigned, for the reason the log gives.
    signed, line = store.sign(OTHER)
    assert (signed, line["reason"]) == ([], "domain_not_signed")
    row = store.keys_json()[f"{OTHER}/n1"]
    assert (row["state"], row["dns"]) == ("active", "missing")
    assert row["warnings"] == []  # no "signing, but its record is missing"
    assert row["next"] == (
        f"not signing: {OTHER} is not in [signing] domains (to sign with it, set {setting})"
    )
    # The line printed makes it sign, and only then is the missing record worth a warning.
    store.write(domains=setting.removeprefix("domains = "))
    signed, line = store.sign(OTHER)
    assert signed == [f"a=rsa-sha256 d={OTHER} s=n1"]
    row = store.keys_json()[f"{OTHER}/n1"]
    assert row["next"] == "signing"
    assert row["warnings"] == ["signing, but its record is missing: every signature fails"]


def test_an_algorithm_not_configured_says_so_and_names_the_line_that_signs(store: Store) -> None:
    done = store.run("keys", "new", DOMAIN, "--algorithm", "ed25519", "--selector", "e1")
    assert done.returncode == 0, done.stderr
    assert "from now on" not in done.stdout
    assert "does not sign: ed25519-sha256 is not in [signing] algorithms." in done.stdout
    setting = 'algorithms = ["rsa-sha256", "ed25519-sha256"]'
    assert f"    {setting}\n" in done.stdout
    signed, _ = store.sign(DOMAIN)
    assert signed == [f"a=rsa-sha256 d={DOMAIN} s=s1"]
    keys = store.keys_json()
    assert keys[f"{DOMAIN}/e1"]["warnings"] == []
    assert str(keys[f"{DOMAIN}/e1"]["next"]).startswith("not signing: ed25519-sha256 is not in")
    assert keys[f"{DOMAIN}/s1"]["next"] == "signing"  # the RSA key signs, its record matches
    store.write(signing=setting + "\n")
    signed, _ = store.sign(DOMAIN)
    assert signed == [f"a=rsa-sha256 d={DOMAIN} s=s1", f"a=ed25519-sha256 d={DOMAIN} s=e1"]


# --- item 9: --publish is checked before anything changes ---


@pytest.mark.parametrize(
    ("publish", "named"),
    [
        ("", "keys.publish.server"),
        ('[keys.publish]\nserver = "127.0.0.1"\n', "keys.publish.tsig_key_file"),
        ('[keys.publish]\nserver = "127.0.0.1"\ntsig_key_file = "/nonexistent/tsig.key"\n', "TSIG"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["keys", "rotate", DOMAIN, "--publish"],
        ["keys", "retire", DOMAIN, "s1", "--force", "--publish"],
        ["keys", "retire", DOMAIN, "s1", "--force", "--revoke", "--publish"],
    ],
    ids=" ".join,
)
def test_publish_without_its_settings_changes_nothing(
    store: Store, command: list[str], publish: str, named: str
) -> None:
    store.config.write_text(store.config.read_text() + publish)
    before = snapshot(store.root)
    done = store.run(*command)
    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stderr.startswith(f"reputable keys {command[1]}: fix these and run it again:\n")
    assert named in done.stderr
    assert "refusing to start" not in done.stderr
    assert snapshot(store.root) == before
    assert store.keys_json()[f"{DOMAIN}/s1"]["state"] == "active"


@pytest.mark.parametrize(
    "command",
    [
        ["keys", "rotate", DOMAIN, "--publish"],
        ["keys", "retire", DOMAIN, "s1", "--force", "--publish"],
    ],
    ids=" ".join,
)
def test_an_update_the_server_refuses_changes_nothing_either(
    store: Store, command: list[str], tmp_path: Path
) -> None:
    """DNS first, then the store: a failed update leaves the command free to be run again."""
    tsig = tmp_path / "tsig.key"
    tsig.write_text(TSIG_KEY)
    os.chmod(tsig, 0o600)
    closed = free_port()  # nothing listens there: the TCP connection is refused
    store.config.write_text(
        store.config.read_text()
        + f'[keys.publish]\nserver = "127.0.0.1:{closed}"\nzone = "example.com"\n'
        f'tsig_key_file = "{tsig}"\n'
    )
    before = snapshot(store.root)
    done = store.run(*command)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot send the update to 127.0.0.1:{closed}" in done.stderr
    assert snapshot(store.root) == before


# --- item 11: no key, no advice for a host without a domain ---


def test_no_key_is_made_for_localhost_or_a_short_name(store: Store) -> None:
    before = snapshot(store.root)
    for name in ("localhost", "vm", "vm.localdomain"):
        done = store.run("keys", "new", name)
        assert done.returncode == 64, done.stdout + done.stderr
        assert f"reputable keys new: {name} is not a mail domain" in done.stderr
        rotated = store.run("keys", "rotate", name)
        assert rotated.returncode == 64
    assert snapshot(store.root) == before


@pytest.mark.parametrize("fqdn", sorted(HOSTS))
def test_a_host_without_a_domain_is_told_what_to_set(store: Store, fqdn: str) -> None:
    store.write(domains="[]")
    before = snapshot(store.root)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "reputable", *args, "--config", str(store.config)]
        return subprocess.run(
            without_domain(command, fqdn, store.root.parent / "vm"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    told = f'this host has no mail domain (its name is "{fqdn}", no /etc/mailname)'
    fix = f'set [signing] domains = ["example.com"] (your mail domain) in {store.config}'
    for args, code in [
        (["keys", "new"], 78),
        (["keys", "new", "--if-missing"], 0),
        (["keys", "rotate"], 78),
    ]:
        done = run(*args)
        assert done.returncode == code, done.stdout + done.stderr
        assert done.stdout == ""
        assert done.stderr.startswith(f"reputable {' '.join(args[:2])}: {told}: no key made.")
        assert fix in done.stderr
    listed = run("keys", "dns")
    assert (listed.returncode, listed.stdout) == (
        1,
        f"{told}: no keys to show; {fix}, or write the domain to /etc/mailname\n",
    )
    assert snapshot(store.root) == before


def test_check_gives_no_advice_for_a_host_without_a_domain(store: Store) -> None:
    store.write(domains="[]")
    closed = free_port()
    store.config.write_text(
        store.config.read_text()
        + '[host]\nsending_ips = ["203.0.113.99"]\nhelo_name = "mail.example.org"\n'
        + f'[checks]\ndnsbl = []\nport25_target = "127.0.0.1:{closed}"\n'
    )
    command = [sys.executable, "-m", "reputable", "check", "--json", "--config", str(store.config)]
    done = subprocess.run(
        without_domain(command, "localhost", store.root.parent / "vm"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    rows = {row["id"]: row for row in json.loads(done.stdout)["checks"]}
    domain = rows.pop("domain")
    assert domain["status"] == "fail"
    assert domain["summary"].startswith('this host has no mail domain (its name is "localhost"')
    assert domain["fix"].startswith('set [signing] domains = ["example.com"]')
    assert done.returncode == 2
    assert not [i for i in rows if i.split(".")[0] in ("spf", "dmarc", "mx", "dkim")]
    assert "localhost" not in json.dumps(rows)  # no advice for the host's own name
