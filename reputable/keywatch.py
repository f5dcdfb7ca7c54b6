"""The milter's background key work: reload the keyring when the store changes, activate proven keys. I/O.

Runs in one daemon thread beside libmilter. The store is polled (a stat of
each key file every few seconds, no inotify dependency), and pending keys
are checked against DNS every `[keys] check_interval`. Nothing here may stop
the milter: every failure is logged and retried at the next round.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from reputable.errors import ConfigError, ReputableError
from reputable.keys.lifecycle_commands import activate_pending
from reputable.log import Field, emit, logger
from reputable.runtime import RuntimeHolder, load_runtime

_log = logger("keys")
STORE_POLL_S = 2.0

Signature = tuple[tuple[str, int, int], ...]


def store_signature(root: Path) -> Signature:
    """What changes when a key or its metadata is written: names, sizes, modification times."""
    if not root.is_dir():
        return ()
    entries = []
    for path in sorted(root.glob("*/*")):
        if path.suffix in (".pem", ".toml") and not path.name.startswith("."):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


class KeyWatcher:
    def __init__(self, holder: RuntimeHolder, stopping: threading.Event) -> None:
        self.holder = holder
        self.stopping = stopping
        self.signature = store_signature(holder.current.config.signing.keys)
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
        if signature != self.signature:
            self.signature = signature
            self.reload()

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
            for problem in exc.problems:
                emit(
                    _log,
                    logging.ERROR,
                    {Field.EVENT: "keys_reload_failed", Field.DETAIL: str(problem)},
                )
            return
        self.holder.replace(runtime)
        signing = " ".join(k.label for ks in runtime.keyring.by_domain.values() for k in ks)
        emit(_log, logging.INFO, {Field.EVENT: "keys_reloaded", Field.KEYS: signing or "none"})
