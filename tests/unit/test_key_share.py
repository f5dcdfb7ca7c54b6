"""`reputable keys share GROUP`: one group reads the keys, nobody else; the store still loads."""

from __future__ import annotations

import grp
import io
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from reputable.config import Config, SigningConfig
from reputable.errors import EX_USAGE
from reputable.keys.commands import new_command
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.share import share_command
from reputable.keys.store import bits_of, generate_private_key, read_store, write_key
from reputable.signing.algorithm import Algorithm

DOMAIN = "example.com"
GROUP = "nogroup"  # on every Debian system; Exim's would be Debian-exim


def shared_store(tmp_path: Path) -> Config:
    config = Config(signing=SigningConfig(domains=(DOMAIN,), keys=tmp_path / "keys"))
    assert new_command(config, DOMAIN, "s1", "rsa", 2048, False, out=io.StringIO()) == 0
    out = io.StringIO()
    assert share_command(config, GROUP, out=out) == 0
    assert "shared with group nogroup: it may read 1 key files" in out.getvalue()
    return config


def mode_and_group(path: Path) -> tuple[int, int]:
    info = path.stat()
    return stat.S_IMODE(info.st_mode) | (info.st_mode & stat.S_ISGID), info.st_gid


def test_the_group_may_read_the_keys_and_the_names_and_nothing_more(tmp_path: Path) -> None:
    config = shared_store(tmp_path)
    gid = grp.getgrnam(GROUP).gr_gid
    root = config.signing.keys
    directory = root / DOMAIN
    assert mode_and_group(root) == (0o2750, gid)
    assert mode_and_group(directory) == (0o2750, gid)
    assert mode_and_group(directory / "s1.pem") == (0o640, gid)
    assert mode_and_group(directory / "active-rsa.selector") == (0o640, gid)
    assert mode_and_group(directory / "s1.toml") == (0o640, gid)
    contents = read_store(root)
    assert [k.key.selector for k in contents.keys] == ["s1"] and contents.problems == ()


def test_keys_made_later_in_a_shared_store_are_the_group_s_to_read(tmp_path: Path) -> None:
    config = shared_store(tmp_path)
    gid = grp.getgrnam(GROUP).gr_gid
    now = datetime.now(UTC)
    private = generate_private_key(Algorithm.ED25519_SHA256, 0)
    meta = KeyMetadata(Algorithm.ED25519_SHA256, bits_of(private), now, KeyState.ACTIVE, now)
    write_key(config.signing.keys, "example.org", "e1", private, meta)
    directory = config.signing.keys / "example.org"
    assert mode_and_group(directory) == (0o2750, gid)
    assert mode_and_group(directory / "e1.pem") == (0o640, gid)
    assert mode_and_group(directory / "e1.toml") == (0o640, gid)
    assert read_store(config.signing.keys).problems == ()


def test_a_key_readable_by_more_than_its_shared_group_is_refused(tmp_path: Path) -> None:
    config = shared_store(tmp_path)
    key = config.signing.keys / DOMAIN / "s1.pem"
    for mode, gid in ((0o644, None), (0o660, None), (0o640, os.getgid())):
        os.chmod(key, mode)
        if gid is not None:
            os.chown(key, -1, gid)
        (problem,) = read_store(config.signing.keys).problems
        assert problem.key == "file mode", (mode, gid)
        os.chmod(key, 0o640)
        os.chown(key, -1, grp.getgrnam(GROUP).gr_gid)
    # The same 0640 key in a directory shared with nobody: refused too.
    os.chmod(key.parent, 0o700)
    assert [p.key for p in read_store(config.signing.keys).problems] == ["file mode"]


def test_an_unknown_group_is_refused(tmp_path: Path) -> None:
    config = Config(signing=SigningConfig(domains=(DOMAIN,), keys=tmp_path / "keys"))
    err = io.StringIO()
    assert share_command(config, "no-such-group", err=err) == EX_USAGE
    assert "no group named 'no-such-group'" in err.getvalue()


def test_a_directory_above_the_store_the_group_cannot_pass_is_named(tmp_path: Path) -> None:
    config = Config(signing=SigningConfig(domains=(DOMAIN,), keys=tmp_path / "a" / "keys"))
    assert new_command(config, DOMAIN, "s1", "rsa", 2048, False, out=io.StringIO()) == 0
    os.chmod(tmp_path / "a", 0o750)
    err = io.StringIO()
    assert share_command(config, GROUP, out=io.StringIO(), err=err) == 0
    assert f"cannot pass through {tmp_path / 'a'}" in err.getvalue()
    assert f"chmod o+x {tmp_path / 'a'}" in err.getvalue()
    os.chmod(tmp_path / "a", 0o751)
    err = io.StringIO()
    assert share_command(config, GROUP, out=io.StringIO(), err=err) == 0
    assert str(tmp_path / "a") not in err.getvalue()
