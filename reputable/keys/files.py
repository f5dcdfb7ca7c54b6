"""Atomic, private file writes and the mode checks the key store relies on. I/O."""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# A store shared with one group (`reputable keys share GROUP`, for Exim's own signer): the
# directories setgid with that group, so what is made in them is the group's, and the keys
# readable by the group alone, never writable by it, never readable by others.
SHARED_DIR = 0o2750
SHARED_KEY = 0o640


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Write `data` to `path` so a reader sees the old file or the whole new one, never a part.

    The temporary file is created with its final mode before any byte is
    written (a key is never readable by others, not even for a moment), then
    fsynced, renamed over the target, and the directory fsynced so the rename
    survives a crash.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits we asked for
        give_to_directory_owner(fd, path.parent)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_directory(path: Path) -> None:
    """Create `path` (and parents) with mode 0700 for the new levels, owned as their parent;
    2750 in a store shared with a group (see `is_shared`)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for level in reversed(missing):
        level.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        fd = os.open(level, os.O_RDONLY | os.O_DIRECTORY)
        try:
            give_to_directory_owner(fd, level.parent)
            if is_shared(level.parent):
                os.fchmod(fd, SHARED_DIR)
        finally:
            os.close(fd)


def is_shared(directory: Path) -> bool:
    """Whether the directory is shared with its group: setgid, the group may read and enter,
    may not write, others have nothing (mode 2750)."""
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return False
    return stat.S_IMODE(mode) == SHARED_DIR


def key_file_mode(directory: Path) -> int:
    """The mode of a key made in `directory`: readable by the directory's group if shared."""
    return SHARED_KEY if is_shared(directory) else PRIVATE_FILE


def give_to_directory_owner(fd: int, directory: Path) -> None:
    """When root writes into a store that belongs to a service user, the file is that user's.

    An admin runs `reputable keys ...` as root (sudo) while the milter runs as
    the `reputable` user, which owns the key store: a key left owned by root
    (mode 0600) could not be read by the milter. Anyone else cannot give a
    file away, and needs not: what they make is theirs, in their own store.
    """
    if os.geteuid() != 0:
        return
    owner = os.stat(directory)
    if owner.st_uid != 0:
        os.fchown(fd, owner.st_uid, owner.st_gid)


def unsafe_mode(path: Path) -> int | None:
    """The file's permission bits if group or others may read or write it, else None."""
    bits = stat.S_IMODE(path.stat().st_mode)
    return bits if bits & 0o077 else None
