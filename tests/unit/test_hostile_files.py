"""Hostile files where a config or a key should be: each is a clear error, none blocks a read.

A FIFO, a directory, a dangling symlink, a key RFC 8301 forbids and a config that
is not UTF-8, read in-process (the same cases through the real daemon and the
command line are in tests/hostile/test_files.py). Every test runs under an alarm:
a read that blocked would fail it instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reputable import runtime as runtime_module
from reputable.config import Config, SigningConfig, load_config
from reputable.errors import ConfigError
from reputable.keys.commands import new_command
from reputable.keys.import_plan import plan_tables
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.private_keys import read_private_key
from reputable.keys.publish import load_tsig_key
from reputable.keys.store import read_store, write_key
from reputable.keywatch import KeyWatcher, store_signature
from reputable.log import record_fields
from reputable.milter import server as server_module
from reputable.milter.server import new_event_loop
from reputable.regular_file import UnreadableFile, read_regular_file
from reputable.runtime import RuntimeHolder, load_runtime
from reputable.signing.algorithm import Algorithm

DEADLINE_S = 20
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

# A 512-bit RSA key (test data only): cryptography will not make one any more, OpenSSL will.
RSA_512_PEM = (Path(__file__).parent / "data" / "rsa-512.pem").read_bytes()


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """Fail (never hang) a test whose read blocks: the alarm interrupts the blocked call."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"blocked for {DEADLINE_S}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(DEADLINE_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def rsa_pem(bits: int) -> bytes:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def config_for(root: Path) -> Config:
    return Config(signing=SigningConfig(domains=("example.com",), keys=root))


def store_with_key(root: Path) -> Path:
    """A store with one good key (Ed25519: instant to make), as `reputable keys new` leaves it."""
    config = Config(
        signing=SigningConfig(
            domains=("example.com",), keys=root, algorithms=(Algorithm.ED25519_SHA256,)
        )
    )
    assert new_command(config, "example.com", "good", "ed25519", 0, False, out=io.StringIO()) == 0
    return root / "example.com" / "good.pem"


def make_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def make_directory(path: Path) -> None:
    path.mkdir(mode=0o700)


def make_dangling(path: Path) -> None:
    path.symlink_to(path.parent / "gone.pem")


def make_loop(path: Path) -> None:
    path.symlink_to(path)


def make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (make_fifo, "a FIFO (named pipe)"),
    "directory": (make_directory, "a directory"),
    "dangling symlink": (make_dangling, "a dangling symlink (to {dir}/gone.pem)"),
    "symlink loop": (make_loop, "a symlink loop"),
    "socket": (make_socket, "a socket"),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_anything_but_a_regular_file_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    make, reason = HOSTILE[kind]
    path = tmp_path / "x.pem"
    make(path)
    with pytest.raises(UnreadableFile) as caught:
        read_regular_file(path)
    assert caught.value.reason == reason.format(dir=tmp_path)
    assert not caught.value.missing


def test_regular_files_are_read_through_symlinks_and_bounded(tmp_path: Path) -> None:
    target = tmp_path / "target.pem"
    target.write_bytes(b"data")
    link = tmp_path / "link.pem"
    link.symlink_to(target)
    read = read_regular_file(link)
    assert (read.data, read.info.st_ino) == (b"data", target.stat().st_ino)
    with pytest.raises(UnreadableFile) as caught:
        read_regular_file(target, max_bytes=3)
    assert caught.value.reason == "too large (4 bytes)"
    with pytest.raises(UnreadableFile) as missing:
        read_regular_file(tmp_path / "nothing")
    assert (missing.value.reason, missing.value.missing) == ("missing", True)


@pytest.mark.parametrize("kind", ["fifo", "directory", "dangling symlink"])
def test_a_key_store_entry_that_is_no_file_is_a_problem_naming_it(
    tmp_path: Path, kind: str
) -> None:
    good = store_with_key(tmp_path)
    make, reason = HOSTILE[kind]
    bad = good.with_name("x.pem")
    make(bad)
    contents = read_store(tmp_path)
    assert [k.key.selector for k in contents.keys] == ["good"]
    (problem,) = contents.problems
    assert (problem.source, problem.key) == (str(bad), "private key")
    assert problem.value == reason.format(dir=bad.parent)
    expected = "point it at one or remove it" if kind == "dangling symlink" else "remove it"
    assert expected in problem.allowed
    with pytest.raises(ConfigError):
        load_runtime(config_for(tmp_path))


def test_metadata_that_is_a_fifo_is_a_problem(tmp_path: Path) -> None:
    good = store_with_key(tmp_path)
    meta = good.with_suffix(".toml")
    meta.unlink()
    make_fifo(meta)
    (problem,) = read_store(tmp_path).problems
    assert (problem.source, problem.key, problem.value) == (
        str(meta),
        "metadata",
        "a FIFO (named pipe)",
    )


def test_a_symlink_to_a_private_key_is_loaded(tmp_path: Path) -> None:
    """A key linked in from elsewhere (e.g. /etc/dkimkeys) is legitimate; its target is checked."""
    elsewhere = tmp_path / "elsewhere.pem"
    elsewhere.write_bytes(rsa_pem(2048))
    elsewhere.chmod(0o600)
    store = tmp_path / "keys"
    (store / "example.com").mkdir(parents=True)
    (store / "example.com" / "linked.pem").symlink_to(elsewhere)
    (stored,) = read_store(store).keys
    assert stored.key.selector == "linked"
    elsewhere.chmod(0o644)
    (problem,) = read_store(store).problems
    assert (problem.key, problem.value) == ("file mode", "0644")


def test_an_rsa_key_under_1024_bits_is_refused_with_the_fix(tmp_path: Path) -> None:
    pem = tmp_path / "example.com" / "weak.pem"
    pem.parent.mkdir()
    pem.write_bytes(RSA_512_PEM)
    pem.chmod(0o600)
    contents = read_store(tmp_path)
    assert contents.keys == ()
    (problem,) = contents.problems
    assert (problem.source, problem.key, problem.value) == (
        str(pem),
        "private key",
        "RSA of 512 bits",
    )
    assert "RFC 8301" in problem.allowed
    assert "reputable keys new example.com" in problem.allowed
    with pytest.raises(ConfigError) as refused:
        read_private_key(pem)  # nor is it imported
    assert refused.value.problems[0].value == "RSA of 512 bits"


def test_an_rsa_1024_key_signs_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "reputable")
    pem = tmp_path / "example.com" / "old.pem"
    pem.parent.mkdir()
    pem.write_bytes(rsa_pem(1024))
    pem.chmod(0o600)
    runtime = load_runtime(config_for(tmp_path))
    assert [k.selector for k in runtime.keyring.keys_for("example.com")] == ["old"]
    (warning,) = [f for r in caplog.records if (f := record_fields(r)).get("event") == "key_weak"]
    assert (warning["domain"], warning["selector"], warning["bits"]) == ("example.com", "old", 1024)
    assert "reputable keys rotate example.com --bits 2048" in str(warning["fix"])


def test_the_key_not_its_metadata_says_how_many_bits(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    meta = KeyMetadata(Algorithm.RSA_SHA256, 4096, NOW, KeyState.ACTIVE, NOW)
    write_key(tmp_path, "example.com", "liar", private, meta)
    (stored,) = read_store(tmp_path).keys
    assert stored.meta.bits == 1024


def test_an_import_source_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "mail.private"
    make_fifo(source)
    with pytest.raises(ConfigError) as refused:
        read_private_key(source)
    assert refused.value.problems[0].value == "a FIFO (named pipe)"


@pytest.mark.parametrize("kind", ["fifo", "directory", "dangling symlink"])
def test_a_tsig_key_file_that_is_no_file_is_refused(tmp_path: Path, kind: str) -> None:
    make, reason = HOSTILE[kind]
    path = tmp_path / "update.key"
    make(path)
    with pytest.raises(ConfigError) as refused:
        load_tsig_key(path)
    problem = refused.value.problems[0]
    assert (problem.key, problem.value) == ("TSIG key file", reason.format(dir=tmp_path))


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_an_opendkim_table_that_is_no_file_is_refused(tmp_path: Path, kind: str) -> None:
    make, reason = HOSTILE[kind]
    table = tmp_path / "KeyTable"
    make(table)
    with pytest.raises(ConfigError) as refused:
        plan_tables(table, None, refile=False)
    assert refused.value.problems[0].value == "unreadable"
    assert reason in refused.value.problems[0].allowed


def test_a_mailname_that_is_a_fifo_is_no_domain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailname = tmp_path / "mailname"
    make_fifo(mailname)
    monkeypatch.setattr(runtime_module, "MAILNAME", mailname)
    assert runtime_module.read_mailname() == ""


def test_a_config_that_is_not_utf8_names_the_key_and_the_value(tmp_path: Path) -> None:
    path = tmp_path / "reputable.toml"
    path.write_bytes(b'[milter]\nmode = "enf\xe9rce"\n[signing]\ndomains = ["ex\xe4mple.com"]\n')
    with pytest.raises(ConfigError) as refused:
        load_config(str(path), environ={})
    found = [(p.source, p.key, p.value) for p in refused.value.problems]
    assert found == [
        (str(path), "milter.mode", '"enf\\xe9rce"'),
        (str(path), "signing.domains", '"ex\\xe4mple.com"'),
    ]
    assert all("UTF-8" in p.allowed for p in refused.value.problems)


def test_a_config_comment_that_is_not_utf8_is_placed_by_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "reputable.toml"
    path.write_bytes(b'[milter]\n# caf\xe9\nmode = "monitor"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(str(path), environ={})
    (problem,) = refused.value.problems
    assert (problem.key, problem.value) == ("(line 2, column 6)", "byte 0xe9")


@pytest.mark.parametrize("kind", ["fifo", "directory", "dangling symlink"])
def test_a_config_path_that_is_no_file_is_a_config_error(tmp_path: Path, kind: str) -> None:
    make, reason = HOSTILE[kind]
    path = tmp_path / "reputable.toml"
    make(path)
    with pytest.raises(ConfigError) as refused:
        load_config(str(path), environ={})
    (problem,) = refused.value.problems
    assert (problem.source, problem.key) == (str(path), "(file)")
    assert problem.value == reason.format(dir=tmp_path)


def test_the_watcher_sees_mode_owner_and_type_changes(tmp_path: Path) -> None:
    good = store_with_key(tmp_path)
    before = store_signature(tmp_path)
    assert store_signature(tmp_path) == before  # nothing changed: no reload
    good.chmod(0o644)
    after_chmod = store_signature(tmp_path)
    assert after_chmod != before
    make_dangling(good.with_name("x.pem"))
    after_link = store_signature(tmp_path)
    assert after_link != after_chmod
    good.with_name("x.pem").unlink()
    make_fifo(good.with_name("x.pem"))
    assert store_signature(tmp_path) not in (after_link, after_chmod)


def test_the_watcher_sees_an_owner_change(tmp_path: Path) -> None:
    good = store_with_key(tmp_path)
    before = store_signature(tmp_path)
    others = [g for g in os.getgroups() if g != good.stat().st_gid]
    if os.geteuid() == 0:
        os.chown(good, 65534, -1)
    elif others:
        os.chown(good, -1, others[0])
    else:
        pytest.skip("needs root or a second group to give the key to")
    assert store_signature(tmp_path) != before


def test_a_key_made_readable_is_reported_and_the_loaded_keys_go_on_signing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    good = store_with_key(tmp_path)
    config = Config(
        signing=SigningConfig(
            domains=("example.com",), keys=tmp_path, algorithms=(Algorithm.ED25519_SHA256,)
        )
    )
    holder = RuntimeHolder(load_runtime(config))
    before = holder.current
    watcher = KeyWatcher(holder, threading.Event())
    good.chmod(0o644)
    watcher.round()
    assert holder.current is before
    (line,) = [
        f for r in caplog.records if (f := record_fields(r)).get("event") == "keys_reload_failed"
    ]
    assert line["file"] == str(good)
    assert f"chmod 600 {good}" in str(line["fix"])
    assert "reputable keys rotate example.com" in str(line["fix"])
    good.chmod(0o600)
    watcher.round()
    assert holder.current is not before
    assert "keys_reloaded" in [record_fields(r).get("event") for r in caplog.records]


def test_a_reload_reads_the_files_on_a_worker_while_the_loop_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGHUP whose reading is slow leaves the loop free; a refused config keeps the old one."""
    caplog.set_level(logging.INFO, "reputable")
    monkeypatch.setattr(server_module, "configure_logging", lambda config: None)
    store_with_key(tmp_path / "keys")
    holder = RuntimeHolder(load_runtime(config_for(tmp_path / "keys")))
    before = holder.current
    path = tmp_path / "reputable.toml"
    path.write_bytes(b'[milter]\nmode = "enf\xe9rce"\n')
    reading, release = threading.Event(), threading.Event()

    def slow_load() -> Config:
        reading.set()
        release.wait(DEADLINE_S)
        return load_config(str(path), environ={})

    def events() -> list[object]:
        return [record_fields(r).get("event") for r in caplog.records]

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as executor:
            server_module.reload(holder, slow_load, executor)
            while not reading.is_set():
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)  # the loop runs while the worker reads
            release.set()
            while "reload_failed" not in events():
                await asyncio.sleep(0.005)

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(asyncio.wait_for(scenario(), 10))
    finally:
        release.set()
    assert holder.current is before
    (line,) = [f for r in caplog.records if (f := record_fields(r)).get("event") == "reload_failed"]
    assert line["file"] == str(path)
    assert "milter.mode" in str(line["detail"])
    assert "UTF-8" in str(line["fix"])


def test_a_change_before_the_watcher_starts_is_not_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Between the keys' loading at start and the watcher's first look, a chmod still counts."""
    caplog.set_level(logging.INFO, "reputable")
    good = store_with_key(tmp_path)
    config = Config(
        signing=SigningConfig(
            domains=("example.com",), keys=tmp_path, algorithms=(Algorithm.ED25519_SHA256,)
        )
    )
    holder = RuntimeHolder(load_runtime(config))
    good.chmod(0o644)
    KeyWatcher(holder, threading.Event()).round()
    (line,) = [
        f for r in caplog.records if (f := record_fields(r)).get("event") == "keys_reload_failed"
    ]
    assert line["file"] == str(good)


def test_an_unchanged_store_is_not_reloaded_by_the_first_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    store_with_key(tmp_path)
    config = Config(
        signing=SigningConfig(
            domains=("example.com",), keys=tmp_path, algorithms=(Algorithm.ED25519_SHA256,)
        )
    )
    holder = RuntimeHolder(load_runtime(config))
    before = holder.current
    caplog.clear()
    KeyWatcher(holder, threading.Event()).round()
    assert holder.current is before
    assert [record_fields(r).get("event") for r in caplog.records] == []
