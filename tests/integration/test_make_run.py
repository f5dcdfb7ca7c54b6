"""`make run`'s start script: creates a key once, starts the milter, prints what to paste."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.daemon import free_port

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


def run_demo(config: Path, seconds: float = 20.0) -> str:
    env = {**os.environ, "REPUTABLE_CONFIG": str(config)}
    process = subprocess.Popen(
        ["sh", str(ROOT / "packaging" / "demo-run.sh"), str(reputable_command(config.parent))],
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
    assert len(list((tmp_path / "keys" / "example.com").glob("*.pem"))) == 1
