"""`reputable sign`: stdin to stdout, the same signer, the message otherwise unchanged."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import dkim
import pytest

from reputable.config import Config, SigningConfig
from reputable.filter import EX_DATAERR, sign_stream
from reputable.keys.commands import new_command
from reputable.keys.record import record_value
from reputable.keys.store import read_store
from reputable.signing.algorithm import Algorithm

MESSAGE = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hello\r\n\r\nHi Bob.\r\n"
)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    keys = tmp_path_factory.mktemp("keys")
    config = Config(
        signing=SigningConfig(
            domains=("example.com",),
            keys=keys,
            algorithms=(Algorithm.RSA_SHA256, Algorithm.ED25519_SHA256),
        )
    )
    for algorithm, selector in (("rsa", "r1"), ("ed25519", "e1")):
        assert (
            new_command(config, "example.com", selector, algorithm, 2048, False, out=io.StringIO())
            == 0
        )
    return config


def dns(config: Config) -> object:
    records = {
        f"{s.key.selector}._domainkey.{s.key.domain}.".encode(): record_value(
            s.key.algorithm, s.key.private_key
        ).encode()
        for s in read_store(config.signing.keys).keys
    }
    return lambda name, timeout=5: records.get(name)


def run(config: Config, data: bytes) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    code = sign_stream(config, io.BytesIO(data), out, err)
    return code, out.getvalue(), err.getvalue()


def test_signs_and_keeps_the_message(config: Config) -> None:
    code, out, _ = run(config, MESSAGE)
    assert code == 0
    assert out.endswith(MESSAGE)
    assert out.count(b"DKIM-Signature:") == 2
    for index in range(2):
        assert dkim.DKIM(out).verify(idx=index, dnsfunc=dns(config))


def test_lone_lf_input_gets_lf_output_and_verifies(config: Config) -> None:
    lf_message = MESSAGE.replace(b"\r\n", b"\n")
    code, out, _ = run(config, lf_message)
    assert code == 0
    assert b"\r" not in out
    assert out.endswith(lf_message)
    # A receiver sees the message with CRLF line ends, as SMTP carries it.
    assert dkim.DKIM(out.replace(b"\n", b"\r\n")).verify(idx=0, dnsfunc=dns(config))


def test_foreign_domain_passes_unchanged(config: Config) -> None:
    foreign = MESSAGE.replace(b"alice@example.com", b"alice@example.org")
    assert run(config, foreign)[:2] == (0, foreign)


def test_not_a_message_is_refused(config: Config) -> None:
    code, out, err = run(config, b"\x00\x01 not a mail message\n")
    assert code == EX_DATAERR
    assert out == b""
    assert "not a mail message" in err


def test_command_line(config: Config, tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        f'[signing]\ndomains = ["example.com"]\nkeys = "{config.signing.keys}"\n'
        '[log]\nlevel = "warning"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "reputable", "sign", "--config", str(path)],
        input=MESSAGE,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"DKIM-Signature:")
    assert done.stdout.endswith(MESSAGE)
    assert dkim.DKIM(done.stdout).verify(dnsfunc=dns(config))


def test_standard_error_shared_with_the_output_gets_no_log_line(
    config: Config, tmp_path: Path
) -> None:
    """As Exim runs a transport filter: one pipe for both; the log line must not join the mail."""
    path = tmp_path / "r.toml"
    path.write_text(f'[signing]\ndomains = ["example.com"]\nkeys = "{config.signing.keys}"\n')
    for message in (MESSAGE, MESSAGE.replace(b"alice@example.com", b"carol@example.org")):
        done = subprocess.run(
            [sys.executable, "-m", "reputable", "sign", "--config", str(path)],
            input=message,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0
        assert done.stdout.endswith(message) and b"logger=" not in done.stdout
    # Apart, standard error has the line.
    apart = subprocess.run(
        [sys.executable, "-m", "reputable", "sign", "--config", str(path)],
        input=MESSAGE,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert b"logger=sign action=accept" in apart.stderr
