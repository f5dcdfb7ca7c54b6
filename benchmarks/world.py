"""The benchmark's world: one signing domain, its keys, and a DNS server that says all is well.

One RSA-2048 key and one Ed25519 key are made with ``reputable keys new``
into reputable's key store (``<keys>/<domain>/<selector>.pem`` plus its
metadata); OpenDKIM and dkimpy-milter are pointed at the same PEM files.
The DNS server (the integration tests' in-process :class:`DnsServer`) serves
a clean world for the sending IP and the domain: PTR and forward-confirmed A,
SPF pass, DMARC p=reject, an MX, both DKIM records, and a blocklist zone (for
the IP) and a domain blocklist zone that list nothing.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from reputable.signing.algorithm import Algorithm
from tests.integration.harness.dnsserver import DnsServer

DOMAIN = "bench.example.com"
SENDING_IP = "203.0.113.25"
HELO = f"mail.{DOMAIN}"
RSA_SELECTOR = "bench-rsa"
ED25519_SELECTOR = "bench-ed"
DNSBL_ZONE = "bl.bench.test"
DOMAIN_DNSBL_ZONE = "dbl.bench.test"
MAIL_FROM = f"alice@{DOMAIN}"
RCPT_DOMAIN = "sink.test"


@dataclass(frozen=True)
class Keys:
    store: Path
    rsa_pem: Path
    ed25519_pem: Path
    ed25519_seed: Path
    """dkimpy-milter's form of the same Ed25519 key: the base64 32-byte seed."""


def make_keys(workdir: Path) -> Keys:
    """Create the two keys with `reputable keys new` (RSA-2048, Ed25519)."""
    store = workdir / "keys"
    config = workdir / "keys.toml"
    config.write_text(f'[signing]\ndomains = ["{DOMAIN}"]\nkeys = "{store}"\n')
    base = [sys.executable, "-m", "reputable", "keys", "new", DOMAIN, "--config", str(config)]
    for extra in (
        ["--selector", RSA_SELECTOR, "--algorithm", "rsa", "--bits", "2048"],
        ["--selector", ED25519_SELECTOR, "--algorithm", "ed25519"],
    ):
        proc = subprocess.run([*base, *extra], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"reputable keys new failed: {proc.stdout}{proc.stderr}")
    rsa_pem = store / DOMAIN / f"{RSA_SELECTOR}.pem"
    ed_pem = store / DOMAIN / f"{ED25519_SELECTOR}.pem"
    loaded = serialization.load_pem_private_key(ed_pem.read_bytes(), password=None)
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise RuntimeError(f"{ed_pem} is not an Ed25519 key")
    raw = loaded.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    seed = workdir / "dkimpy-ed25519.key"
    seed.write_text(base64.b64encode(raw).decode("ascii") + "\n")
    seed.chmod(0o600)
    return Keys(store, rsa_pem, ed_pem, seed)


def publish_world(dns: DnsServer, keys: Keys) -> None:
    """The records of a host in good standing (nothing listed anywhere)."""
    dns.set_ptr(SENDING_IP, HELO)
    dns.set_a(HELO, SENDING_IP)
    dns.set_mx(DOMAIN, (10, HELO))
    dns.set_txt(DOMAIN, f"v=spf1 ip4:{SENDING_IP} -all", ttl=3600)
    dns.set_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject", ttl=3600)
    for stored in read_store(keys.store).keys:
        value = record_value(stored.key.algorithm, stored.key.private_key)
        dns.set_txt(record_name(stored.key.selector, DOMAIN), *split_strings(value), ttl=3600)
    # The blocklist zones exist (a TXT at the apex) but list nothing: NXDOMAIN below them.
    dns.set_txt(DNSBL_ZONE, "benchmark blocklist: lists nothing")
    dns.set_txt(DOMAIN_DNSBL_ZONE, "benchmark domain blocklist: lists nothing")


def key_algorithms(keys: Keys) -> dict[str, Algorithm]:
    return {s.key.selector: s.key.algorithm for s in read_store(keys.store).keys}
