"""`make run`'s start script: creates a key once, starts the milter, prints what to paste."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reputable.log import parse_logfmt
from tests.integration.daemon import free_port
from tests.integration.harness.hostname import HOSTS, without_domain

ROOT = Path(__file__).resolve().parents[2]


def reputable_command(scratch: Path) -> Path:
    """The `reputable` command `make run` passes: the venv's, else one for this interpreter.

    Debian's python3 running the working tree (as the Debian package will) has no
    console script; a two-line one starts the same entry point on it.
    """
    installed = Path(sys.executable).with_name("reputable")
    if installed.exists():
        return installed
    script = scratch / "reputable"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m reputable "$@"\n')
    script.chmod(0o755)
    return script


def run_demo(
    config: Path, seconds: float = 20.0, wrap: Callable[[list[str]], list[str]] = list
) -> str:
    env = {**os.environ, "REPUTABLE_CONFIG": str(config)}
    process = subprocess.Popen(
        wrap(
            ["sh", str(ROOT / "packaging" / "demo-run.sh"), str(reputable_command(config.parent))]
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        output.append(line)
        if "event=start" in line or not line:
            break
    process.send_signal(signal.SIGTERM)
    # Not communicate(): it reads the pipe itself and would lose what readline() has
    # already buffered past the start line (the setup text often comes in that read).
    # What is left fits in the pipe, so waiting first cannot block the milter.
    process.wait(20)
    with process.stdout:
        rest = process.stdout.read()
    assert process.returncode == 0, "".join(output) + rest
    return "".join(output) + rest


def test_demo_creates_one_key_and_prints_postfix_and_dns(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "reputable.toml"
    config.write_text(
        f'[milter]\nsocket = "inet:{port}@127.0.0.1"\n'
        f'[signing]\ndomains = ["example.com"]\nkeys = "{tmp_path / "keys"}"\n'
    )
    first = run_demo(config)
    assert "Created " in first
    assert f"smtpd_milters = inet:127.0.0.1:{port}" in first
    assert f"non_smtpd_milters = inet:127.0.0.1:{port}" in first
    assert "._domainkey.example.com. IN TXT (" in first
    assert "event=start" in first
    second = run_demo(config)
    assert "already has an active rsa-sha256 key; nothing created." in second
    assert len(list((tmp_path / "keys" / "example.com").glob("[!a]*.pem"))) == 1
    assert (tmp_path / "keys" / "example.com" / "active-rsa.pem").is_symlink()


@pytest.mark.parametrize("fqdn", sorted(HOSTS))
def test_a_host_without_a_domain_gets_no_key_and_the_milter_runs_without_signing(
    tmp_path: Path, fqdn: str
) -> None:
    """Host "vm", no /etc/mailname, no [signing] domains: `make run` on a fresh VM."""
    port = free_port()
    config = tmp_path / "reputable.toml"
    keys = tmp_path / "keys"
    config.write_text(f'[milter]\nsocket = "inet:{port}@127.0.0.1"\n[signing]\nkeys = "{keys}"\n')
    output = run_demo(config, wrap=lambda command: without_domain(command, fqdn, tmp_path / "vm"))
    events = {
        fields["event"]: fields
        for fields in map(parse_logfmt, output.splitlines())
        if "event" in fields
    }
    start = events["start"]
    assert (start["domain"], start["keys"], start["mode"]) == ("none", "none", "enforce")
    said = events["no_domain"]
    assert said["level"] == "warning"
    assert f'its name is "{fqdn}"' in said["detail"]
    assert said["detail"].endswith("nothing is signed")
    assert said["fix"].startswith(
        f'set [signing] domains = ["example.com"] (your mail domain) in {config}'
    )
    assert f'reputable keys new: this host has no mail domain (its name is "{fqdn}"' in output
    assert "Not signing: this host has no mail domain" in output
    assert "_domainkey" not in output and "Created" not in output
    assert list(keys.rglob("*.pem")) == list(keys.rglob("*.toml")) == []
