"""Everything one message needs, built from config and key store, swapped whole on reload."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reputable.config import Config
from reputable.keys.keyring import Keyring, build_keyring, missing_algorithms
from reputable.keys.store import read_sound_store
from reputable.log import Field, emit, logger
from reputable.signing.signer import SigningPolicy

if TYPE_CHECKING:
    from reputable.reputation import Reputation

_log = logger("keys")


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    domains: tuple[str, ...]
    keyring: Keyring
    policy: SigningPolicy


MAILNAME = Path("/etc/mailname")


def host_domain(fqdn: str, mailname: str = "") -> str:
    """The host's mail domain: Debian's /etc/mailname if set, else the FQDN less its first label.

    A name without a dot (e.g. "localhost" on a machine without a domain) is
    returned as it is; the milter then says at start that the domain should
    be configured.
    """
    if mailname.strip():
        return mailname.strip().rstrip(".").lower()
    name = fqdn.rstrip(".").lower()
    _, dot, rest = name.partition(".")
    return rest if dot and "." in rest else name


def signing_domains(config: Config) -> tuple[str, ...]:
    if config.signing.domains:
        return config.signing.domains
    try:
        mailname = MAILNAME.read_text(encoding="utf-8", errors="replace")
    except OSError:
        mailname = ""
    return (host_domain(socket.getfqdn(), mailname),)


def signing_policy(config: Config) -> SigningPolicy:
    s = config.signing
    return SigningPolicy(
        header_canon=s.header_canonicalization,
        body_canon=s.body_canonicalization,
        headers=s.headers,
        oversign=s.oversign,
    )


def load_runtime(config: Config) -> Runtime:
    """Read the key store; unsafe or unreadable keys stop the start (ConfigError)."""
    stored = read_sound_store(config.signing.keys)
    domains = signing_domains(config)
    keyring = build_keyring(stored, domains, config.signing.algorithms)
    for domain, algorithm in missing_algorithms(keyring, domains, config.signing.algorithms):
        fix = f"reputable keys new {domain} --algorithm {algorithm.value.split('-')[0]}"
        emit(
            _log,
            logging.WARNING,
            {
                Field.EVENT: "key_missing",
                Field.DOMAIN: domain,
                Field.ALGORITHM: algorithm,
                Field.FIX: fix,
            },
        )
    return Runtime(config, domains, keyring, signing_policy(config))


class RuntimeHolder:
    """The current Runtime; sessions read `current` once per message, reload swaps it whole.

    Replacing is one attribute store, atomic under the GIL: a message never
    sees half a reload.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
        self.reputation: Reputation | None = None  # the gate's engine, when the milter runs one
        self._sessions = 0
        self._lock = threading.Lock()

    def replace(self, runtime: Runtime) -> None:
        self.current = runtime

    def session_opened(self) -> None:
        with self._lock:
            self._sessions += 1

    def session_closed(self) -> None:
        with self._lock:
            self._sessions -= 1

    @property
    def sessions(self) -> int:
        """Connections open now: a stop waits for them to finish."""
        return self._sessions
