"""Keys made by root in a store that belongs to the service user are the service user's."""

from __future__ import annotations

import io
import os
import pwd
import stat
from pathlib import Path

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from reputable.keys.locking import store_lock


def test_root_gives_what_it_makes_in_a_service_users_store_to_that_user(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "the tests run as root (make test, CI)"
    nobody = pwd.getpwnam("nobody")
    store = tmp_path / "keys"
    store.mkdir(mode=0o700)
    os.chown(store, nobody.pw_uid, nobody.pw_gid)
    config = Config(signing=SigningConfig(domains=("example.com",), keys=store))

    assert new_command(config, "example.com", "s1", "rsa", 2048, False, out=io.StringIO()) == 0
    with store_lock(store):  # the lock the milter shares with rotate and activate
        pass

    made = [store / ".lock", store / "example.com", *(store / "example.com").iterdir()]
    assert {p.name for p in made} == {
        ".lock",
        "example.com",
        "s1.pem",
        "s1.toml",
        "active-rsa.pem",  # a link to s1.pem
        "active-rsa.selector",
    }
    for path in made:
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
        # A symlink's own bits mean nothing (0777); what it leads to is checked as itself.
        assert stat.S_ISLNK(info.st_mode) or stat.S_IMODE(info.st_mode) & 0o077 == 0, path


def test_a_store_root_owns_stays_roots(tmp_path: Path) -> None:
    store = tmp_path / "keys"
    config = Config(signing=SigningConfig(domains=("example.com",), keys=store))
    assert new_command(config, "example.com", "s1", "rsa", 2048, False, out=io.StringIO()) == 0
    assert (store / "example.com" / "s1.pem").stat().st_uid == os.geteuid()
