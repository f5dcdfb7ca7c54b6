"""Reading a config or key file without trusting what sits at its path. I/O.

Whatever a path names, a read here never blocks and never raises anything but
`UnreadableFile`: a FIFO (whose open would wait for a writer forever), a
device, a socket or a directory is refused before it is opened; the open
itself is non-blocking and checked again on the descriptor (`fstat`), so a
file swapped for a FIFO between the two checks is refused too. Symlinks are
followed (an `/etc` managed by configuration management, a key linked in from
`/etc/dkimkeys`); what is checked and read is always the file the link leads
to, and a dangling link is named as one.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from reputable.errors import ReputableError

MAX_BYTES = 1 << 20  # a config or a key is a few KiB: anything larger is not one
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class UnreadableFile(ReputableError):
    """A path that does not lead to a readable regular file; `reason` says what it is instead."""

    def __init__(self, path: Path, reason: str, *, missing: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.missing = missing  # nothing at all at the path (not even a dangling symlink)
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class RegularFile:
    data: bytes
    info: os.stat_result  # of the file read (a symlink's target), taken on its descriptor


def read_regular_file(path: Path, max_bytes: int = MAX_BYTES) -> RegularFile:
    """The bytes of the regular file at `path` (symlinks followed), or UnreadableFile."""
    try:
        _refuse_irregular(path, os.stat(path))
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        raise _failure(path, exc) from None
    try:
        info = os.fstat(fd)
        _refuse_irregular(path, info)
        if info.st_size > max_bytes:
            raise UnreadableFile(path, f"too large ({info.st_size} bytes)")
        data = _read_all(path, fd, max_bytes)
    except OSError as exc:
        raise _failure(path, exc) from None
    finally:
        os.close(fd)
    return RegularFile(data, info)


def _refuse_irregular(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        raise UnreadableFile(path, kind)


def _read_all(path: Path, fd: int, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, 65536):
        size += len(chunk)
        if size > max_bytes:  # it grew since fstat
            raise UnreadableFile(path, f"too large (over {max_bytes} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _failure(path: Path, exc: OSError) -> UnreadableFile:
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return UnreadableFile(path, f"a dangling symlink (to {_link_target(path)})")
    if exc.errno == errno.ENOENT:
        return UnreadableFile(path, "missing", missing=True)
    if exc.errno == errno.ELOOP:
        return UnreadableFile(path, "a symlink loop")
    return UnreadableFile(path, f"unreadable ({exc.strerror or exc})")


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:  # gone since: still worth naming as the link it was
        return "?"
