"""`reputable keys new|dns`: create keys and show their DNS records. I/O."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from reputable.config import DEFAULT_PATH, Config, is_mail_domain
from reputable.errors import EX_CONFIG, EX_USAGE, ConfigError, Problem
from reputable.keys import active_names
from reputable.keys.keyring import NotSigning, not_signing
from reputable.keys.lifecycle import rotate_hint, selector_for
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.record import record_name, record_value, split_strings, zone_file_line
from reputable.keys.selector import is_valid_selector
from reputable.keys.store import (
    StoredKey,
    bits_of,
    generate_private_key,
    read_sound_store,
    taken_selectors,
    write_key,
)
from reputable.runtime import no_domain, signing_domains
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey

EX_CANTCREAT = 73
MIN_RSA_BITS = 1024
MAX_RSA_BITS = 4096
ALGORITHMS = {"rsa": Algorithm.RSA_SHA256, "ed25519": Algorithm.ED25519_SHA256}


def _existing(config: Config, domain: str) -> list[StoredKey]:
    return [k for k in read_sound_store(config.signing.keys) if k.key.domain == domain]


def domain_or_default(config: Config, domain: str | None, command: str, err: TextIO) -> str | None:
    """The domain named on the command line, else the first signing domain.

    None, said on `err`, when that is no mail domain (localhost, a host's short
    name): no key is ever made for one.
    """
    if domain is not None:
        if is_mail_domain(domain):
            return domain
        print(
            f"reputable keys {command}: {domain} is not a mail domain: "
            "name the domain your mail is sent from, e.g. example.com",
            file=err,
        )
        return None
    domains = signing_domains(config)
    if domains:
        return domains[0]
    missing = no_domain(config)
    print(
        f"reputable keys {command}: {missing.detail}: no key made. To make one, {missing.fix}; "
        f"or name the domain: reputable keys {command} example.com",
        file=err,
    )
    return None


def signing_notes(config: Config, domain: str, algorithm: Algorithm) -> list[NotSigning]:
    """Why an active key of this domain and algorithm would not sign (empty: it signs)."""
    return not_signing(domain, algorithm, signing_domains(config), config.signing.algorithms)


def print_not_signing(config: Config, notes: Sequence[NotSigning], out: TextIO) -> None:
    """The [signing] lines that make a key sign, and how the milter learns of them."""
    settings = [n.setting for n in notes if n.setting]
    if not settings:
        return
    where = config.source if not config.source.startswith("<") else str(DEFAULT_PATH)
    print(f"To sign with it, set in the [signing] section of {where}:", file=out)
    for setting in settings:
        print(f"    {setting}", file=out)
    print("then reload reputable (`systemctl reload reputable`, or restart the milter).", file=out)


def bits_allowed(algorithm: Algorithm, bits: int, command: str, err: TextIO) -> bool:
    if algorithm is Algorithm.RSA_SHA256 and not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        print(
            f"reputable keys {command}: --bits {bits}: expected {MIN_RSA_BITS} to {MAX_RSA_BITS}",
            file=err,
        )
        return False
    return True


def print_record(stored: StoredKey, out: TextIO) -> None:
    key = stored.key
    value = record_value(key.algorithm, key.private_key)
    strings = split_strings(value)
    state = f"{key.algorithm.value}, {stored.meta.state}"
    print(f"DNS record for {key.domain} selector {key.selector} ({state}):", file=out)
    print(f"  name:  {record_name(key.selector, key.domain)}", file=out)
    print("  type:  TXT", file=out)
    print(
        f"  value ({len(strings)} string{'s' if len(strings) > 1 else ''} of at most 255 bytes):",
        file=out,
    )
    for s in strings:
        print(f'    "{s}"', file=out)
    print("  zone file:", file=out)
    for line in zone_file_line(key.selector, key.domain, value, ttl=3600).splitlines():
        print(f"    {line}", file=out)


def new_command(
    config: Config,
    domain_arg: str | None,
    selector: str | None,
    algorithm_name: str,
    bits: int,
    if_missing: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    algorithm = ALGORITHMS[algorithm_name]
    if not bits_allowed(algorithm, bits, "new", err):
        return EX_USAGE
    domain = domain_or_default(config, domain_arg, "new", err)
    if domain is None:
        if domain_arg is not None:
            return EX_USAGE
        # `make run` goes on to start the milter, which then runs without signing.
        return 0 if if_missing else EX_CONFIG
    existing = _existing(config, domain)
    if if_missing:
        active = [
            k for k in existing if k.key.algorithm is algorithm and k.meta.state is KeyState.ACTIVE
        ]
        if active:
            print(
                f"{domain} already has an active {algorithm.value} key; nothing created.", file=out
            )
            print_record(active[-1], out)
            return 0
    active = [
        k for k in existing if k.key.algorithm is algorithm and k.meta.state is KeyState.ACTIVE
    ]
    if active:
        print(
            f"reputable keys new: {domain} has an active {algorithm.value} key ({active[-1].key.selector}); "
            f"replace it safely with `{rotate_hint(domain, algorithm)}`",
            file=err,
        )
        return EX_CANTCREAT
    now = datetime.now(UTC)
    host = socket.gethostname().split(".")[0].lower()
    taken = taken_selectors(config.signing.keys, domain)
    selector = selector or selector_for(now, algorithm, config.keys.selector, host, taken)
    if not is_valid_selector(selector):
        print(
            f"reputable keys new: selector {selector!r}: "
            "expected lower-case letters, digits, '-' and '.', not beginning with 'active-'",
            file=err,
        )
        return EX_USAGE
    private_key = generate_private_key(algorithm, bits)
    meta = KeyMetadata(algorithm, bits_of(private_key), now, KeyState.ACTIVE, now)
    try:
        path = write_key(config.signing.keys, domain, selector, private_key, meta)
    except FileExistsError:
        print(
            f"reputable keys new: {domain}/{selector} exists already; choose another --selector",
            file=err,
        )
        return EX_CANTCREAT
    except OSError as exc:
        raise ConfigError(
            [Problem(str(config.signing.keys), "signing.keys", "not writable", str(exc))]
        ) from None
    active_names.refresh(config.signing.keys, {domain})
    if algorithm is Algorithm.RSA_SHA256 and bits < 2048:
        print(
            f"warning: {bits}-bit RSA keys are weak and some receivers ignore them; use 2048",
            file=err,
        )
    notes = signing_notes(config, domain, algorithm)
    if notes:
        why = "; ".join(n.reason for n in notes)
        print(f"Created {path} (mode 0600), active, but it does not sign: {why}.", file=out)
        print_not_signing(config, notes, out)
    else:
        print(f"Created {path} (mode 0600); it signs {domain} mail from now on.", file=out)
    print_record(StoredKey(SigningKey(domain, selector, algorithm, private_key), meta, path), out)
    print(
        "Publish this record in the domain's DNS: receivers cannot verify signatures before then.",
        file=out,
    )
    return 0


def dns_command(config: Config, domain_arg: str | None, out: TextIO = sys.stdout) -> int:
    domains = [domain_arg] if domain_arg else list(signing_domains(config))
    if not domains:
        missing = no_domain(config)
        print(f"{missing.detail}: no keys to show; {missing.fix}", file=out)
        return 1
    found = False
    for domain in domains:
        for stored in _existing(config, domain):
            print_record(stored, out)
            found = True
    if not found:
        print(
            f"no keys for {', '.join(domains)} in {config.signing.keys}; "
            "create one with: reputable keys new",
            file=out,
        )
        return 1
    return 0
