"""Hostile files through the real daemon and the command line: clear errors, never a hang.

What an admin's mistake (or a local attacker with write access to the store)
can put where a config or a key should be: a config that is not UTF-8, a
FIFO, a directory or a dangling symlink named like a key, an RSA key too short
to sign with (RFC 8301), and a key made readable by others while the milter
runs. At start each stops the daemon with exit 78 and the file named; while
running each is a `reload_failed` / `keys_reload_failed` line, the daemon goes
on serving with what it had, and SIGTERM still stops it. Every wait here is
bounded: a daemon that hung fails its test.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.store import write_key
from reputable.keywatch import STORE_POLL_S
from reputable.runtime import load_runtime
from reputable.signing.algorithm import Algorithm
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.unit.milter.test_connection import (
    Mta,
    body_and_end,
    connect,
    end_of_headers,
    headers,
    mail,
    run,
    signed,
)
from tests.unit.milter.test_session import verifies

pytestmark = pytest.mark.integration

COMMAND_TIMEOUT_S = 30  # a start or a command that blocks on a FIFO fails here instead of hanging
STOP_TIMEOUT_S = 10
# A 512-bit RSA key (test data only): cryptography will not make one any more, OpenSSL will.
RSA_512_PEM = (Path(__file__).parents[1] / "unit" / "data" / "rsa-512.pem").read_bytes()


@pytest.fixture
def milter(dns: DnsServer, tmp_path: Path) -> Iterator[MilterDaemon]:
    """A daemon (not started) for example.com, its store holding one good key, r1."""
    keys = tmp_path / "keys"
    config = Config(signing=SigningConfig(domains=("example.com",), keys=keys))
    assert new_command(config, "example.com", "r1", "rsa", 2048, False, out=io.StringIO()) == 0
    daemon = MilterDaemon(
        tmp_path, keys, ["example.com"], dns.address, listen=f"unix:{tmp_path / 'milter.sock'}"
    )
    yield daemon
    daemon.stop()


def rsa_pem(bits: int) -> bytes:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def plant_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def plant_directory(path: Path) -> None:
    path.mkdir(mode=0o700)


def plant_dangling_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "gone.pem")


def plant_rsa_512(path: Path) -> None:
    path.write_bytes(RSA_512_PEM)
    path.chmod(0o600)


PLANTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (plant_fifo, "private key = a FIFO (named pipe)"),
    "directory": (plant_directory, "private key = a directory"),
    "dangling symlink": (plant_dangling_symlink, "private key = a dangling symlink"),
    "rsa-512": (plant_rsa_512, "private key = RSA of 512 bits"),
}
NOT_FILES = ["fifo", "directory", "dangling symlink"]


def start_milter_process(daemon: MilterDaemon) -> subprocess.CompletedProcess[str]:
    """`reputable milter` expected to refuse its start: its exit, bounded in time."""
    env = {**os.environ, "REPUTABLE_CONFIG": str(daemon.config_path)}
    return subprocess.run(
        [sys.executable, "-m", "reputable", "milter"],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def reputable_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reputable", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def send_message(daemon: MilterDaemon, queue_id: str) -> tuple[dict[str, str], bytes]:
    """One message from an internal client: its log line and the message as Postfix passes it."""
    path = daemon.libmilter_socket.removeprefix("unix:")
    replies: list[tuple[bytes, bytes]] = []

    async def scenario() -> None:
        reader, writer = await asyncio.open_unix_connection(path)
        mta = Mta(reader, writer)
        try:
            await mta.negotiate()
            mta.send([connect(), *mail(), *headers(queue_id=queue_id), *end_of_headers(queue_id)])
            assert await mta.until_final() == [(b"c", b"")]
            mta.send(body_and_end(queue_id=queue_id))
            replies.extend(await mta.until_final())
        finally:
            await mta.close()

    run(scenario(), 10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [line for line in daemon.message_lines() if line.get("queue_id") == queue_id]
        if lines:
            return lines[0], signed(replies)
        time.sleep(0.05)
    raise TimeoutError(f"no message line for {queue_id}")


def events(daemon: MilterDaemon, event: str) -> list[dict[str, str]]:
    return [line for line in daemon.lines() if line.get("event") == event]


def stops_cleanly(daemon: MilterDaemon) -> None:
    """SIGTERM is heard (the loop is not stuck) and the daemon exits 0 without a traceback."""
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(STOP_TIMEOUT_S) == 0
    assert "Traceback" not in (daemon.workdir / "stderr.txt").read_text(errors="replace")


def non_utf8_config(daemon: MilterDaemon) -> bytes:
    """The daemon's config, signing example.net instead, with a Latin-1 byte in helo_name."""
    text = daemon.config_path.read_bytes()
    text = text.replace(b'domains = ["example.com"]', b'domains = ["example.net"]')
    return text.replace(b'helo_name = "mta.example.com"', b'helo_name = "mta.ex\xe4mple.com"')


# -- C1: a config that is not UTF-8 ----------------------------------------------------------


def test_a_config_that_is_not_utf8_stops_the_start_with_exit_78(milter: MilterDaemon) -> None:
    milter.write_config()
    milter.config_path.write_bytes(non_utf8_config(milter))
    done = start_milter_process(milter)
    assert done.returncode == 78
    assert "Traceback" not in done.stderr
    expected = f'{milter.config_path}: host.helo_name = "mta.ex\\xe4mple.com": UTF-8 text'
    assert expected in done.stderr


def test_a_config_that_is_not_utf8_on_sighup_keeps_the_old_one(milter: MilterDaemon) -> None:
    milter.start()
    milter.config_path.write_bytes(non_utf8_config(milter))
    milter.reload()
    (failed,) = events(milter, "reload_failed")
    assert failed["file"] == str(milter.config_path)
    assert "host.helo_name" in failed["detail"]
    assert "UTF-8" in failed["fix"]
    assert events(milter, "reloaded") == []
    # The old config (signing example.com) goes on serving.
    line, _ = send_message(milter, "C1A")
    assert (line["action"], line["dkim"]) == ("accept", "example.com/r1")
    stops_cleanly(milter)


# -- C2, C3 and item 6: what is no key file, in the store ------------------------------------


@pytest.mark.parametrize("kind", list(PLANTS))
def test_a_bad_key_store_entry_stops_the_start_with_exit_78(
    milter: MilterDaemon, kind: str
) -> None:
    plant, expected = PLANTS[kind]
    bad = milter.keys / "example.com" / "x.pem"
    plant(bad)
    milter.write_config()
    done = start_milter_process(milter)
    assert done.returncode == 78
    assert "Traceback" not in done.stderr
    assert f"{bad}: {expected}" in done.stderr


@pytest.mark.parametrize("kind", NOT_FILES)
def test_a_key_store_entry_that_is_no_file_is_reported_while_the_daemon_serves(
    milter: MilterDaemon, kind: str
) -> None:
    """The watcher reports it, SIGHUP reports it (never hangs on a FIFO), mail goes on."""
    milter.start()
    plant, expected = PLANTS[kind]
    bad = milter.keys / "example.com" / "x.pem"
    plant(bad)
    (noticed,) = milter.wait_for_event("keys_reload_failed")
    assert noticed["file"] == str(bad)
    assert expected in noticed["detail"]
    milter.reload()
    (failed,) = events(milter, "reload_failed")
    assert failed["file"] == str(bad)
    assert expected in failed["detail"]
    line, _ = send_message(milter, "C3A")
    assert (line["action"], line["dkim"]) == ("accept", "example.com/r1")
    stops_cleanly(milter)


# -- C4: RSA key sizes (RFC 8301) ------------------------------------------------------------


def test_an_rsa_1024_key_signs_with_a_warning(milter: MilterDaemon) -> None:
    """A key copied in by hand (no metadata), 1024 bits: it signs, and the log says to rotate."""
    (milter.keys / "example.com" / "r1.pem").unlink()
    (milter.keys / "example.com" / "r1.toml").unlink()
    pem = milter.keys / "example.com" / "old.pem"
    pem.write_bytes(rsa_pem(1024))
    pem.chmod(0o600)
    milter.start()
    (warning,) = events(milter, "key_weak")
    assert (warning["domain"], warning["selector"], warning["bits"]) == (
        "example.com",
        "old",
        "1024",
    )
    assert "reputable keys rotate example.com --bits 2048" in warning["fix"]
    line, message = send_message(milter, "C4A")
    assert line["dkim"] == "example.com/old"
    runtime = load_runtime(
        Config(signing=SigningConfig(domains=("example.com",), keys=milter.keys))
    )
    assert verifies(message, 0, runtime)
    stops_cleanly(milter)


# -- C5: a key made readable by others while the daemon runs ---------------------------------


def test_a_key_made_world_readable_is_noticed_within_the_watchers_interval(
    milter: MilterDaemon,
) -> None:
    milter.start()
    pem = milter.keys / "example.com" / "r1.pem"
    pem.chmod(0o644)
    changed = time.monotonic()
    (noticed,) = milter.wait_for_event("keys_reload_failed")
    assert time.monotonic() - changed < 2 * STORE_POLL_S + 1.0
    assert noticed["file"] == str(pem)
    assert "file mode = 0644" in noticed["detail"]
    assert f"chmod 600 {pem}" in noticed["fix"]
    assert "reputable keys rotate example.com" in noticed["fix"]
    # The key already loaded goes on signing until it is fixed (README: Keys).
    line, _ = send_message(milter, "C5A")
    assert line["dkim"] == "example.com/r1"
    pem.chmod(0o600)
    milter.wait_for_event("keys_reloaded")
    stops_cleanly(milter)


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(PLANTS))
def test_keys_list_names_a_bad_key_store_entry(milter: MilterDaemon, kind: str) -> None:
    plant, expected = PLANTS[kind]
    bad = milter.keys / "example.com" / "x.pem"
    plant(bad)
    milter.write_config()
    done = reputable_cli(milter.config_path, "keys", "list", "--no-dns")
    assert done.returncode == 78
    assert "Traceback" not in done.stderr
    assert f"{bad}: {expected}" in done.stderr


def test_keys_list_shows_an_rsa_1024_key_with_its_warning(milter: MilterDaemon) -> None:
    """However many bits its metadata claims: the key itself says how strong it is."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    now = datetime.now(UTC)
    claims = KeyMetadata(Algorithm.RSA_SHA256, 2048, now, KeyState.RETIRED, now)
    write_key(milter.keys, "example.com", "old", private, claims)
    milter.write_config()
    done = reputable_cli(milter.config_path, "keys", "list", "--no-dns", "--json")
    assert done.returncode == 0, done.stderr
    (old,) = [row for row in json.loads(done.stdout)["keys"] if row["selector"] == "old"]
    assert old["bits"] == 1024
    assert any("1024 bits" in warning for warning in old["warnings"])


def test_commands_refuse_a_config_that_is_not_utf8(milter: MilterDaemon) -> None:
    milter.write_config()
    milter.config_path.write_bytes(non_utf8_config(milter))
    done = reputable_cli(milter.config_path, "keys", "list", "--no-dns")
    assert done.returncode == 78
    assert "Traceback" not in done.stderr
    assert f"{milter.config_path}: host.helo_name = " in done.stderr
