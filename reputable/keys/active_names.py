"""Stable names for the key that signs now, for signers that read the store (Exim). I/O.

For each domain and algorithm with an active key, the domain's directory
holds two names that always lead to it:

* ``active-rsa.selector`` (``active-ed25519.selector``): its selector, one line;
* ``active-rsa.pem`` (``active-ed25519.pem``): a symlink to its key file.

They follow every activation (``keys new``, ``rotate``, ``activate``, an
import, the milter activating a proven key): `refresh` rewrites both
atomically, the link first, so that a reader that takes the key file from
the selector (Exim: ``dkim_private_key = .../$dkim_selector.pem``) never
pairs a selector with another key. An algorithm left with no active key
loses its names. The key store's readers skip these names: they are not keys.
"""

from __future__ import annotations

import os
from pathlib import Path

from reputable.keys.files import fsync_directory, write_atomic
from reputable.keys.keyring import newest_active
from reputable.keys.store import ACTIVE_PREFIX as PREFIX
from reputable.keys.store import StoredKey, read_store
from reputable.signing.algorithm import Algorithm


def short_name(algorithm: Algorithm) -> str:
    """``rsa-sha256`` -> ``rsa``; ``ed25519-sha256`` -> ``ed25519``."""
    return algorithm.value.split("-", 1)[0]


def is_active_name(path: Path) -> bool:
    """Whether a name in a domain's directory is one of these (not a key, not a selector)."""
    return path.name.startswith(PREFIX)


def refresh(root: Path, domains: set[str] | None = None) -> None:
    """Point each domain's names at its active keys (all domains of the store, or `domains`)."""
    keys = read_store(root).keys
    for domain in sorted(domains if domains is not None else {k.key.domain for k in keys}):
        directory = root / domain
        if not directory.is_dir():
            continue
        for algorithm in Algorithm:
            _point(directory, short_name(algorithm), newest_active(keys, domain, algorithm))


def _point(directory: Path, name: str, active: StoredKey | None) -> None:
    selector_file = directory / f"{PREFIX}{name}.selector"
    link = directory / f"{PREFIX}{name}.pem"
    if active is None:
        selector_file.unlink(missing_ok=True)
        link.unlink(missing_ok=True)
        return
    selector = active.key.selector
    target = active.path.name
    if _reads(selector_file) == f"{selector}\n" and _link_target(link) == target:
        return  # already there: no write, no change the key watcher would see
    fresh = directory / f".{link.name}.{os.getpid()}.tmp"
    fresh.unlink(missing_ok=True)
    os.symlink(target, fresh)
    owner = os.stat(directory)
    if os.geteuid() == 0 and owner.st_uid != 0:  # as the store's files (files.py)
        os.lchown(fresh, owner.st_uid, owner.st_gid)
    os.replace(fresh, link)
    fsync_directory(directory)
    mode = os.stat(active.path).st_mode & 0o777
    write_atomic(selector_file, f"{selector}\n".encode(), mode & 0o640)


def _reads(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
