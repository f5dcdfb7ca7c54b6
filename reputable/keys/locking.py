"""One writer at a time in the key store: an advisory lock file beside the domains. I/O."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reputable.keys.files import ensure_private_directory, give_to_directory_owner

LOCK_NAME = ".lock"


@contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Hold the store's lock: the CLI and the milter's activation never interleave their writes."""
    ensure_private_directory(root)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        give_to_directory_owner(fd, root)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
