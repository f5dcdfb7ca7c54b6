"""The milter's background key work: reload the keyring when the store changes, activate proven keys. I/O.

Runs in one daemon thread beside the event loop, so no read of the store ever
waits on the loop. The store is polled (a stat of each key file every few
seconds, no inotify dependency): a change of content, of mode or of owner, and
a file that appears, goes or turns into something else (a dangling symlink, a
FIFO, a directory) reloads the keys. Pending keys are checked against DNS
every `[keys] check_interval`. Nothing here may stop the milter: every
failure is logged and retried at the next round; a store the reload refuses
(e.g. a key made readable by others) leaves the keys already loaded signing,
and each problem is logged as `keys_reload_failed` with its fix.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from reputable.config import Config
from reputable.errors import ConfigError, ReputableError
from reputable.keys.keyring import Keyring, build_keyring
from reputable.keys.lifecycle_commands import activate_pending
from reputable.keys.record import public_key_base64
from reputable.keys.store import ACTIVE_PREFIX, read_store
from reputable.log import Field, emit, emit_problems, logger
from reputable.runtime import RuntimeHolder, load_runtime

_log = logger("keys")
STORE_POLL_S = 2.0

Fingerprint = tuple[int, ...]
Signature = tuple[tuple[str, Fingerprint], ...]


def store_signature(root: Path) -> Signature:
    """What changes when a key or its metadata is written, replaced, re-linked, chmod- or chown-ed."""
    if not root.is_dir():
        return ()
    entries = []
    for path in sorted(root.glob("*/*")):
        if (
            path.suffix in (".pem", ".toml")
            and not path.name.startswith(".")
            and not path.name.startswith(ACTIVE_PREFIX)
        ):
            fingerprint = file_fingerprint(path)
            if fingerprint is not None:
                entries.append((str(path), fingerprint))
    return tuple(entries)


def file_fingerprint(path: Path) -> Fingerprint | None:
    """The path itself (lstat) and what it leads to: type, mode, owner, size, time, inode.

    A stat never blocks, whatever the file is. A dangling symlink has no target:
    the error stands for one, so a link that breaks is a change too.
    """
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        return None  # gone since the listing
    own: Fingerprint = (link.st_mode, link.st_ino, link.st_mtime_ns)
    try:
        target = os.stat(path) if stat.S_ISLNK(link.st_mode) else link
    except OSError as exc:
        return (*own, -(exc.errno or 1))
    return (
        *own,
        target.st_dev,
        target.st_ino,
        target.st_mode,  # type and permission bits: `chmod 644` is a change
        target.st_uid,
        target.st_gid,
        target.st_size,
        target.st_mtime_ns,
    )


class KeyWatcher:
    def __init__(self, holder: RuntimeHolder, stopping: threading.Event) -> None:
        self.holder = holder
        self.stopping = stopping
        # None: the first round compares the store with the keys loaded at start, not with a
        # stat taken now (a change between that loading and this watcher would be lost).
        self.signature: Signature | None = None
        self.next_check = 0.0  # check pending keys at once
        self.thread = threading.Thread(target=self.run, name="keywatch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.wait(STORE_POLL_S):
            try:
                self.round()
            except Exception:  # a background round must never end the milter
                emit(_log, logging.ERROR, {Field.EVENT: "keywatch_error"}, exc_info=True)

    def round(self) -> None:
        config = self.holder.current.config
        if time.monotonic() >= self.next_check:
            self.next_check = time.monotonic() + config.keys.check_interval_s
            self.activate_proven()
        signature = store_signature(config.signing.keys)
        if signature == self.signature:
            return
        first, self.signature = self.signature is None, signature
        if not first or self.changed_since_loading(config):
            self.reload()

    def changed_since_loading(self, config: Config) -> bool:
        """Whether the store, read quietly, differs from what signs now (or is refused)."""
        contents = read_store(config.signing.keys)
        if contents.problems:
            return True
        current = self.holder.current
        keyring = build_keyring(contents.keys, current.domains, config.signing.algorithms)
        return signing_keys(keyring) != signing_keys(current.keyring)

    def activate_proven(self) -> None:
        config = self.holder.current.config
        try:
            outcomes = activate_pending(config, None, datetime.now(UTC))
        except ReputableError as exc:
            emit(_log, logging.ERROR, {Field.EVENT: "activation_failed", Field.ERROR: str(exc)})
            return
        for stored, refusal in outcomes:
            if refusal is not None:
                fields: dict[Field, object] = {
                    Field.EVENT: "key_pending",
                    Field.DOMAIN: stored.key.domain,
                    Field.SELECTOR: stored.key.selector,
                    Field.REASON: refusal.reason,
                }
                emit(_log, logging.INFO, fields)

    def reload(self) -> None:
        config = self.holder.current.config
        try:
            runtime = load_runtime(config)
        except ConfigError as exc:
            # The keys loaded before go on signing. At start such a store is refused, so that a
            # person looks before the first message; now, dropping a key that others could read
            # would leave its domain's mail unsigned and could not undo the reading (the fix
            # says to rotate it).
            emit_problems(_log, "keys_reload_failed", exc.problems)
            return
        self.holder.replace(runtime)
        signing = " ".join(k.label for ks in runtime.keyring.by_domain.values() for k in ks)
        emit(_log, logging.INFO, {Field.EVENT: "keys_reloaded", Field.KEYS: signing or "none"})


def signing_keys(keyring: Keyring) -> set[tuple[str, str]]:
    """Each key that signs: its label and public key (a key replaced under its name differs)."""
    return {
        (key.label, public_key_base64(key.private_key))
        for keys in keyring.by_domain.values()
        for key in keys
    }
