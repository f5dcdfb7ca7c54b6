"""`reputable keys share GROUP`: let one group read the key store, for a signer of its own. I/O.

Exim signs with the store's keys itself (README, "Exim"); its transport runs
as Debian-exim. The least access that works is a group: the store's
directories become mode 2750 with that group (setgid, so what is made in
them later is the group's too), the private keys, their metadata and the
active-* selector files 0640 (`reputable sign` as Exim's transport filter
reads the metadata too). The group reads; it never writes, and others read
nothing. The store's readers accept a key readable by its group only in such
a directory (keys/store.py).
"""

from __future__ import annotations

import grp
import os
import stat
import sys
from pathlib import Path
from typing import TextIO

from reputable.config import Config
from reputable.errors import EX_CONFIG, EX_USAGE
from reputable.keys.files import SHARED_DIR, SHARED_KEY
from reputable.keys.locking import store_lock
from reputable.keys.store import ACTIVE_PREFIX


def share_command(
    config: Config, group: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    root = config.signing.keys
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        print(f"reputable keys share: no group named {group!r} (Exim's is Debian-exim)", file=err)
        return EX_USAGE
    if not root.is_dir():
        print(
            f"reputable keys share: no key store at {root}; make a key first: reputable keys new",
            file=err,
        )
        return EX_CONFIG
    try:
        with store_lock(root):
            shared = share(root, gid)
    except PermissionError as exc:
        print(
            f"reputable keys share: {exc.filename}: {exc.strerror}; run it as root "
            f"(or as the store's owner, a member of {group})",
            file=err,
        )
        return EX_CONFIG
    print(
        f"{root} is shared with group {group}: it may read {shared} key files (mode 0640) "
        "and the active-* names, and change nothing; others read nothing.",
        file=out,
    )
    for directory in closed_to(root, gid):
        print(
            f"warning: group {group} cannot pass through {directory} to reach the store; "
            f"run: chmod o+x {directory} (others may then pass through, not list it)",
            file=err,
        )
    return 0


def closed_to(root: Path, gid: int) -> list[Path]:
    """The directories above `root` that members of group `gid` may not pass through."""
    closed = []
    for directory in root.resolve().parents:
        info = directory.stat()
        mode = stat.S_IMODE(info.st_mode)
        if not (mode & 0o001 or (info.st_gid == gid and mode & 0o010)):
            closed.append(directory)
    return closed


def share(root: Path, gid: int) -> int:
    """Give the store to group `gid` to read; the number of key files it may now read."""
    keys = 0
    for directory in [root, *sorted(p for p in root.iterdir() if _is_directory(p))]:
        os.chown(directory, -1, gid, follow_symlinks=False)
        os.chmod(directory, SHARED_DIR)
        for path in sorted(directory.iterdir()) if directory != root else []:
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode) or path.name.startswith("."):
                continue  # the active-*.pem links, lock and temporary files
            if path.suffix in (".pem", ".toml") or (
                path.name.startswith(ACTIVE_PREFIX) and path.suffix == ".selector"
            ):
                os.chown(path, -1, gid, follow_symlinks=False)
                os.chmod(path, SHARED_KEY)
                keys += path.suffix == ".pem"
    return keys


def _is_directory(path: Path) -> bool:
    return stat.S_ISDIR(path.lstat().st_mode)
