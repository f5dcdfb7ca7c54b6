"""Everything one message needs, built from config and key store, swapped whole on reload."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reputable.config import DEFAULT_PATH, Config, is_mail_domain
from reputable.keys.keyring import Keyring, build_keyring, missing_algorithms
from reputable.keys.metadata import KeyState
from reputable.keys.store import read_sound_store, weak, weak_key_fields
from reputable.log import Field, emit, logger
from reputable.regular_file import UnreadableFile, read_regular_file
from reputable.signing.signer import SigningPolicy

if TYPE_CHECKING:
    from reputable.inbound.lookups import InboundLookups
    from reputable.metrics import Metrics
    from reputable.reputation import Reputation

_log = logger("keys")


@dataclass(frozen=True, slots=True)
class KeyAge:
    """A stored key that is not retired, as the metrics tell its age."""

    domain: str
    selector: str
    state: str  # pending, active, retiring
    created: datetime


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    domains: tuple[str, ...]
    keyring: Keyring
    policy: SigningPolicy
    keys: tuple[KeyAge, ...] = ()


MAILNAME = Path("/etc/mailname")


def host_domain(fqdn: str, mailname: str = "") -> str:
    """The host's mail domain: Debian's /etc/mailname if set, else the FQDN less its first label.

    "" when neither names a mail domain: a host called "vm", "localhost" or
    "vm.localdomain" has none, and nothing must be signed or advised for such
    a name (see `config.is_mail_domain`).
    """
    from_mailname = mailname.strip().rstrip(".").lower()
    if is_mail_domain(from_mailname):
        return from_mailname
    name = fqdn.rstrip(".").lower()
    _, dot, rest = name.partition(".")
    domain = rest if dot and "." in rest else name
    return domain if is_mail_domain(domain) else ""


def read_mailname() -> str:
    try:
        return read_regular_file(MAILNAME).data.decode("utf-8", errors="replace")
    except UnreadableFile:  # none (or a FIFO, a directory...): the host's name decides
        return ""


def signing_domains(config: Config) -> tuple[str, ...]:
    """[signing] domains, else the host's own mail domain; () when the host has none."""
    if config.signing.domains:
        return config.signing.domains
    domain = host_domain(socket.getfqdn(), read_mailname())
    return (domain,) if domain else ()


@dataclass(frozen=True, slots=True)
class NoDomain:
    """Why nothing can be signed on this host, and the config line that fixes it."""

    detail: str
    fix: str


def no_domain(config: Config) -> NoDomain:
    """For a host where `signing_domains` is empty: what the host is called and what to set."""
    mailname = read_mailname().strip()
    said = f'/etc/mailname says "{mailname}"' if mailname else "no /etc/mailname"
    where = config.source if not config.source.startswith("<") else str(DEFAULT_PATH)
    return NoDomain(
        f'this host has no mail domain (its name is "{socket.getfqdn()}", {said})',
        f'set [signing] domains = ["example.com"] (your mail domain) in {where}, '
        "or write the domain to /etc/mailname",
    )


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
    if not domains:
        missing = no_domain(config)
        detail = f"{missing.detail}: nothing is signed"
        fields = {Field.EVENT: "no_domain", Field.DETAIL: detail, Field.FIX: missing.fix}
        emit(_log, logging.WARNING, fields)
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
    for key in (k for ks in keyring.by_domain.values() for k in ks if weak(k)):
        emit(_log, logging.WARNING, weak_key_fields(key))
    ages = tuple(
        KeyAge(s.key.domain, s.key.selector, s.meta.state.value, s.meta.created)
        for s in stored
        if s.meta.state is not KeyState.RETIRED
    )
    return Runtime(config, domains, keyring, signing_policy(config), ages)


class RuntimeHolder:
    """The current Runtime; sessions read `current` once per message, reload swaps it whole.

    Replacing is one attribute store, atomic under the GIL: a message never
    sees half a reload.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
        self.reputation: Reputation | None = None  # the gate's engine, when the milter runs one
        self.metrics: Metrics | None = None  # when [metrics] listen is set
        self.inbound: InboundLookups | None = None  # with the gate's engine, sharing its caches
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
