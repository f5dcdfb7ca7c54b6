"""The store's names for the key that signs now: active-rsa.selector and active-rsa.pem."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

from reputable.config import Config, SigningConfig
from reputable.keys import active_names
from reputable.keys.commands import new_command
from reputable.keys.lifecycle import Change
from reputable.keys.lifecycle_commands import apply_changes
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.store import bits_of, generate_private_key, read_store, write_key
from reputable.keywatch import store_signature
from reputable.signing.algorithm import Algorithm

DOMAIN = "example.com"


def store_with_key(tmp_path: Path, algorithm: str = "rsa") -> tuple[Config, Path]:
    store = tmp_path / "keys"
    config = Config(signing=SigningConfig(domains=(DOMAIN,), keys=store))
    bits = 2048 if algorithm == "rsa" else 0
    assert new_command(config, DOMAIN, "s1", algorithm, bits, False, out=io.StringIO()) == 0
    return config, store / DOMAIN


def names(directory: Path, short: str = "rsa") -> tuple[str, str]:
    """What the selector file says, and where the link leads."""
    selector = (directory / f"active-{short}.selector").read_text()
    return selector, os.readlink(directory / f"active-{short}.pem")


def test_a_new_key_gets_the_names_and_the_store_still_reads_one_key(tmp_path: Path) -> None:
    config, directory = store_with_key(tmp_path)
    assert names(directory) == ("s1\n", "s1.pem")
    assert (directory / "active-rsa.pem").read_bytes() == (directory / "s1.pem").read_bytes()
    mode = (directory / "active-rsa.selector").stat().st_mode & 0o777
    assert mode == 0o600
    contents = read_store(config.signing.keys)
    assert [k.key.selector for k in contents.keys] == ["s1"] and contents.problems == ()
    assert not [p for p, _ in store_signature(config.signing.keys) if "active-" in p]


def test_the_names_follow_an_activation_and_go_when_no_key_is_active(tmp_path: Path) -> None:
    config, directory = store_with_key(tmp_path)
    now = datetime.now(UTC)
    private = generate_private_key(Algorithm.RSA_SHA256, 2048)
    pending = KeyMetadata(Algorithm.RSA_SHA256, bits_of(private), now, KeyState.PENDING, now)
    write_key(config.signing.keys, DOMAIN, "s2", private, pending)
    active_names.refresh(config.signing.keys)
    assert names(directory) == ("s1\n", "s1.pem")  # a pending key does not sign
    old, new = sorted(read_store(config.signing.keys).keys, key=lambda k: k.key.selector)
    apply_changes(
        [
            Change(new, new.meta.entering(KeyState.ACTIVE, now)),
            Change(old, old.meta.entering(KeyState.RETIRING, now)),
        ]
    )
    assert names(directory) == ("s2\n", "s2.pem")
    (current,) = [k for k in read_store(config.signing.keys).keys if k.key.selector == "s2"]
    apply_changes([Change(current, current.meta.entering(KeyState.RETIRED, now))])
    assert not (directory / "active-rsa.selector").exists()
    assert not (directory / "active-rsa.pem").is_symlink()


def test_ed25519_has_names_of_its_own(tmp_path: Path) -> None:
    _, directory = store_with_key(tmp_path, "ed25519")
    assert names(directory, "ed25519") == ("s1\n", "s1.pem")
    assert not (directory / "active-rsa.selector").exists()


def test_nothing_is_rewritten_when_nothing_changed(tmp_path: Path) -> None:
    config, directory = store_with_key(tmp_path)
    before = [(directory / n).lstat() for n in ("active-rsa.selector", "active-rsa.pem")]
    active_names.refresh(config.signing.keys)
    after = [(directory / n).lstat() for n in ("active-rsa.selector", "active-rsa.pem")]
    assert [(s.st_ino, s.st_mtime_ns) for s in before] == [(s.st_ino, s.st_mtime_ns) for s in after]


def test_no_selector_may_take_the_names(tmp_path: Path) -> None:
    store = tmp_path / "keys"
    config = Config(signing=SigningConfig(domains=(DOMAIN,), keys=store))
    err = io.StringIO()
    assert new_command(config, DOMAIN, "active-rsa", "rsa", 2048, False, err=err) != 0
    assert "not beginning with 'active-'" in err.getvalue()
