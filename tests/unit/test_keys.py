"""The key store: private files, refusals, DNS records split for registrars, selectors."""

from __future__ import annotations

import base64
import io
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from reputable.config import Config, SigningConfig
from reputable.errors import ConfigError
from reputable.keys.commands import new_command
from reputable.keys.metadata import KeyMetadata, KeyState, dump_metadata, parse_metadata
from reputable.keys.record import record_value, split_strings, zone_file_line
from reputable.keys.selector import is_valid_selector
from reputable.keys.store import generate_private_key, read_store, write_key
from reputable.runtime import host_domain, load_runtime
from reputable.signing.algorithm import Algorithm

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def config_for(root: Path, *algorithms: Algorithm) -> Config:
    signing = SigningConfig(
        domains=("example.com",), keys=root, algorithms=algorithms or (Algorithm.RSA_SHA256,)
    )
    return Config(signing=signing)


def test_new_key_is_private_and_loads(tmp_path: Path) -> None:
    out = io.StringIO()
    code = new_command(config_for(tmp_path), "example.com", "sel1", "rsa", 2048, False, out=out)
    assert code == 0
    pem = tmp_path / "example.com" / "sel1.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "example.com").stat().st_mode) == 0o700
    assert not [p for p in pem.parent.iterdir() if p.name.startswith(".")]
    contents = read_store(tmp_path)
    assert contents.problems == ()
    (key,) = contents.keys
    assert key.meta.state is KeyState.ACTIVE
    assert key.meta.bits == 2048
    text = out.getvalue()
    assert "sel1._domainkey.example.com" in text
    for line in text.splitlines():
        if line.strip().startswith('"'):
            assert len(line.strip().strip('"').encode()) <= 255


def test_new_key_never_overwrites(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    assert new_command(config, "example.com", "sel1", "ed25519", 0, False, out=io.StringIO()) == 0
    before = (tmp_path / "example.com" / "sel1.pem").read_bytes()
    err = io.StringIO()
    assert (
        new_command(config, "example.com", "sel1", "rsa", 2048, False, out=io.StringIO(), err=err)
        != 0
    )
    assert "exists already" in err.getvalue()
    err = io.StringIO()
    assert (
        new_command(config, "example.com", None, "ed25519", 0, False, out=io.StringIO(), err=err)
        != 0
    )
    assert "keys rotate example.com" in err.getvalue()
    assert (tmp_path / "example.com" / "sel1.pem").read_bytes() == before


def test_if_missing_keeps_the_existing_key(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    assert new_command(config, "example.com", None, "rsa", 2048, True, out=io.StringIO()) == 0
    out = io.StringIO()
    assert new_command(config, "example.com", None, "rsa", 2048, True, out=out) == 0
    assert "already has an active" in out.getvalue()
    assert len(read_store(tmp_path).keys) == 1


@pytest.mark.parametrize(
    ("args", "expected"), [(("rsa", 512), "--bits 512"), (("rsa", 9000), "--bits 9000")]
)
def test_bad_sizes_are_refused(tmp_path: Path, args: tuple[str, int], expected: str) -> None:
    err = io.StringIO()
    assert (
        new_command(config_for(tmp_path), "example.com", None, args[0], args[1], False, err=err)
        == 64
    )
    assert expected in err.getvalue()


def test_group_readable_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    new_command(config_for(tmp_path), "example.com", "sel1", "rsa", 2048, False, out=io.StringIO())
    pem = tmp_path / "example.com" / "sel1.pem"
    os.chmod(pem, 0o640)
    with pytest.raises(ConfigError) as caught:
        load_runtime(config_for(tmp_path))
    (problem,) = caught.value.problems
    assert problem.source == str(pem)
    assert problem.value == "0640"
    assert f"chmod 600 {pem}" in problem.allowed


def test_garbage_key_and_metadata_are_refused(tmp_path: Path) -> None:
    directory = tmp_path / "example.com"
    directory.mkdir()
    bad = directory / "bad.pem"
    bad.write_bytes(b"not a key")
    bad.chmod(0o600)
    good = generate_private_key(Algorithm.ED25519_SHA256, 0)
    meta = KeyMetadata(Algorithm.RSA_SHA256, 2048, NOW, KeyState.ACTIVE, NOW)
    write_key(tmp_path, "example.com", "liar", good, meta)
    problems = {p.source: p for p in read_store(tmp_path).problems}
    assert problems[str(bad)].value == "unreadable"
    assert problems[str(directory / "liar.toml")].key == "algorithm"


def test_key_without_metadata_is_taken_as_active(tmp_path: Path) -> None:
    directory = tmp_path / "example.com"
    directory.mkdir()
    private = generate_private_key(Algorithm.RSA_SHA256, 1024)
    pem = directory / "opendkim.pem"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o600)
    (stored,) = read_store(tmp_path).keys
    assert stored.meta.state is KeyState.ACTIVE
    assert stored.key.algorithm is Algorithm.RSA_SHA256


def test_metadata_round_trip_and_errors() -> None:
    meta = KeyMetadata(Algorithm.ED25519_SHA256, 256, NOW, KeyState.PENDING, NOW)
    assert parse_metadata(dump_metadata(meta).decode()) == meta
    with pytest.raises(ValueError, match="missing field"):
        parse_metadata('algorithm = "rsa-sha256"\n')
    with pytest.raises(ValueError, match="not TOML"):
        parse_metadata("algorithm = \n")


def test_record_values() -> None:
    rsa_key = generate_private_key(Algorithm.RSA_SHA256, 2048)
    value = record_value(Algorithm.RSA_SHA256, rsa_key)
    assert value.startswith("v=DKIM1; k=rsa; p=MIIB")
    strings = split_strings(value)
    assert len(strings) == 2
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == value
    line = zone_file_line("s1", "example.com", value, ttl=300)
    assert line.startswith("s1._domainkey.example.com. 300 IN TXT (")
    ed_key = generate_private_key(Algorithm.ED25519_SHA256, 0)
    ed_value = record_value(Algorithm.ED25519_SHA256, ed_key)
    assert ed_value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(ed_value.split("p=")[1])) == 32
    assert split_strings(ed_value) == [ed_value]


def test_selectors() -> None:

    assert is_valid_selector("s2026-11")
    assert is_valid_selector("mail.host1")
    assert not is_valid_selector("Bad_Selector")
    assert not is_valid_selector("-x")


@pytest.mark.parametrize(
    ("fqdn", "domain"),
    [
        ("mail.example.com", "example.com"),
        ("example.com", "example.com"),
        ("a.b.example.org.", "b.example.org"),
        # No mail domain: nothing is signed, and no key or advice is made for these.
        ("myhost", ""),
        ("vm", ""),
        ("localhost", ""),
        ("localhost.localdomain", ""),
        ("vm.localdomain", ""),
        ("vm.local", ""),
    ],
)
def test_host_domain(fqdn: str, domain: str) -> None:
    assert host_domain(fqdn) == domain
    assert host_domain(fqdn, "Example.NET.\n") == "example.net"
    assert host_domain(fqdn, "vm\n") == domain  # a mailname without a domain says nothing
    assert host_domain(fqdn, "localhost") == domain


@pytest.mark.parametrize("command", ["new", "rotate", "dns", "list", "activate"])
def test_a_bad_domain_is_a_usage_error_for_every_keys_command(command: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "r.toml"
    config.write_text(f'[signing]\nkeys = "{tmp_path / "keys"}"\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reputable",
            "keys",
            command,
            "exa mple.com",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "'exa mple.com': expected a domain name" in done.stderr
