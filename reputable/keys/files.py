"""Atomic, private file writes and the mode checks the key store relies on. I/O."""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


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
    """Create `path` (and parents) with mode 0700 for the new levels."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)


def unsafe_mode(path: Path) -> int | None:
    """The file's permission bits if group or others may read or write it, else None."""
    bits = stat.S_IMODE(path.stat().st_mode)
    return bits if bits & 0o077 else None
