"""`reputable keys rotate|activate|retire|list`: the key lifecycle at the command line. I/O edge.

Each command reads the store under its lock, asks `lifecycle` (pure) what to
do, and writes the resulting metadata atomically, one file per change.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from reputable.config import Config
from reputable.errors import EX_CONFIG, EX_USAGE, ConfigError, Problem
from reputable.keys import active_names
from reputable.keys.commands import (
    ALGORITHMS,
    bits_allowed,
    domain_or_default,
    print_not_signing,
    print_record,
    signing_notes,
)
from reputable.keys.dnscheck import DnsStatus, RecordCheck, check_key_record
from reputable.keys.files import key_file_mode, write_atomic
from reputable.keys.keyring import not_signing
from reputable.keys.lifecycle import (
    Change,
    Policy,
    Refusal,
    activation_candidates,
    describe,
    next_step,
    plan_activation,
    plan_repairs,
    plan_retirement,
    plan_rotation,
    selector_for,
    warnings,
)
from reputable.keys.locking import store_lock
from reputable.keys.metadata import KeyMetadata, KeyState, dump_metadata, format_time
from reputable.keys.publish import TsigKey, load_tsig_key, publish_txt, remove_txt
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import (
    StoredKey,
    bits_of,
    generate_private_key,
    key_path,
    metadata_path,
    read_sound_store,
    taken_selectors,
    write_key,
)
from reputable.log import Field, emit, logger
from reputable.resolver import build_resolver
from reputable.runtime import signing_domains
from reputable.signing.signature import SigningKey

EX_FAILED = 1
_log = logger("keys")


def policy_of(config: Config) -> Policy:
    return Policy(
        grace=timedelta(seconds=config.keys.grace_s),
        max_age=timedelta(seconds=config.keys.max_age_s),
    )


def load_keys(config: Config) -> list[StoredKey]:
    return read_sound_store(config.signing.keys)


def apply_changes(changes: Sequence[Change]) -> None:
    """Write each key's new metadata, in order, each write atomic on its own; then the
    domains' names for their active keys follow (keys/active_names.py)."""
    for change in changes:
        meta = metadata_path(change.key.path)
        write_atomic(meta, dump_metadata(change.meta), key_file_mode(meta.parent))
        fields: dict[Field, object] = {
            Field.EVENT: f"key_{change.meta.state.value}",
            Field.DOMAIN: change.key.key.domain,
            Field.SELECTOR: change.key.key.selector,
            Field.ALGORITHM: change.key.key.algorithm,
        }
        emit(_log, logging.INFO, fields)
    for root, domains in _roots(changes).items():
        active_names.refresh(root, domains)


def _roots(changes: Sequence[Change]) -> dict[Path, set[str]]:
    """The key stores the changes are in, each with the domains changed."""
    roots: dict[Path, set[str]] = {}
    for change in changes:
        roots.setdefault(change.key.path.parent.parent, set()).add(change.key.key.domain)
    return roots


def check_record(config: Config, stored: StoredKey) -> RecordCheck:
    """Ask DNS (the domain's authoritative servers, or [keys] verify_nameservers) for the key's record."""
    key = stored.key
    return check_key_record(
        key.selector,
        key.domain,
        record_value(key.algorithm, key.private_key),
        build_resolver(config.dns),
        config.keys.verify_nameservers,
        config.dns.timeout_s,
    )


def rotate_command(
    config: Config,
    domain_arg: str | None,
    algorithm_name: str,
    bits: int,
    publish: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    algorithm = ALGORITHMS[algorithm_name]
    if not bits_allowed(algorithm, bits, "rotate", out):
        return EX_USAGE
    domain = domain_or_default(config, domain_arg, "rotate", err)
    if domain is None:
        return EX_USAGE if domain_arg is not None else EX_CONFIG
    tsig = publish_settings(config) if publish else None  # refused before anything is written
    now = datetime.now(UTC)
    root = config.signing.keys
    with store_lock(root):
        keys = load_keys(config)
        refusal = plan_rotation(keys, domain, algorithm)
        if refusal is not None:
            print(f"reputable keys rotate: {refusal.reason}", file=out)
            return EX_FAILED
        host = socket.gethostname().split(".")[0].lower()
        selector = selector_for(
            now, algorithm, config.keys.selector, host, taken_selectors(root, domain)
        )
        private_key = generate_private_key(algorithm, bits)
        meta = KeyMetadata(algorithm, bits_of(private_key), now, KeyState.PENDING, now)
        path = key_path(root, domain, selector)
        stored = StoredKey(SigningKey(domain, selector, algorithm, private_key), meta, path)
        # The record first: if the update fails, no key is made and the command can be rerun.
        zone = publish_record(config, stored, tsig) if tsig is not None else None
        write_key(root, domain, selector, private_key, meta)
    print(f"Created pending key {path}; it does not sign until its DNS record is seen.", file=out)
    print_record(stored, out)
    if zone is not None:
        print(
            f"Published {record_name(selector, domain)} TXT in zone {zone} by RFC 2136 update.",
            file=out,
        )
    current = [
        k
        for k in keys
        if k.key.domain == domain
        and k.key.algorithm is algorithm
        and k.meta.state is KeyState.ACTIVE
    ]
    print_next_steps(config, stored, current, tsig is not None, out)
    return 0


def print_next_steps(
    config: Config, new: StoredKey, current: Sequence[StoredKey], published: bool, out: TextIO
) -> None:
    domain = new.key.domain
    interval = config.keys.check_interval_s
    notes = signing_notes(config, domain, new.key.algorithm)
    print("Next:", file=out)
    if not published:
        print(f"  1. publish the record above in the DNS of {domain};", file=out)
    starts = (
        f"activates {new.key.selector}, which does not sign: {'; '.join(n.reason for n in notes)},"
        if notes
        else f"starts signing with {new.key.selector}"
    )
    print(
        f"  {'2' if not published else '1'}. the milter checks the domain's name servers every {interval // 60 or 1} min "
        f"and {starts} once they all serve this record "
        f"(or run `reputable keys activate {domain}` yourself);",
        file=out,
    )
    if notes:
        print_not_signing(config, notes, out)
        return
    for old in current:
        days = config.keys.grace_s // 86400
        print(
            f"  then {old.key.selector} stops signing and keeps its record {days} days for mail still queued; "
            f"`reputable keys list` says when it may go.",
            file=out,
        )


def publish_settings(config: Config) -> TsigKey:
    """What --publish needs ([keys.publish] and a readable TSIG key), or ConfigError.

    Called before a command changes anything, so that a missing setting stops it
    with nothing done.
    """
    publish = config.keys.publish
    if publish.server is None or publish.tsig_key_file is None:
        allowed = "a primary server and a tsig_key_file, to use --publish"
        missing = "server" if publish.server is None else "tsig_key_file"
        raise ConfigError([Problem(config.source, f"keys.publish.{missing}", '""', allowed)])
    return load_tsig_key(publish.tsig_key_file)


def update_record(
    config: Config, stored: StoredKey, strings: Sequence[str] | None, tsig: TsigKey
) -> str:
    """Replace the key's TXT record with `strings` (None: remove it) by RFC 2136; the zone used."""
    publish = config.keys.publish
    assert publish.server is not None  # publish_settings has checked
    name = record_name(stored.key.selector, stored.key.domain)
    resolver = build_resolver(config.dns)
    timeout = max(config.dns.timeout_s, 5.0)
    if strings is None:
        return remove_txt(
            publish.server, name, tsig, zone=publish.zone, resolver=resolver, timeout_s=timeout
        )
    return publish_txt(
        publish.server,
        name,
        strings,
        publish.ttl,
        tsig,
        zone=publish.zone,
        resolver=resolver,
        timeout_s=timeout,
    )


def publish_record(config: Config, stored: StoredKey, tsig: TsigKey) -> str:
    key = stored.key
    return update_record(
        config, stored, split_strings(record_value(key.algorithm, key.private_key)), tsig
    )


def activate_pending(
    config: Config, domain: str | None, now: datetime
) -> list[tuple[StoredKey, Refusal | None]]:
    """Activate every pending key (of `domain`) whose record is published; the outcome of each."""
    outcomes: list[tuple[StoredKey, Refusal | None]] = []
    with store_lock(config.signing.keys):
        keys = load_keys(config)
        repairs = plan_repairs(keys, now)
        if repairs:
            apply_changes(repairs)
            keys = load_keys(config)
        for target in activation_candidates(keys, domain):
            plan = plan_activation(target, keys, check_record(config, target), now)
            if isinstance(plan, Refusal):
                outcomes.append((target, plan))
                continue
            apply_changes(plan)
            outcomes.append((target, None))
            keys = load_keys(config)
    return outcomes


def activate_command(config: Config, domain: str | None, out: TextIO = sys.stdout) -> int:
    outcomes = activate_pending(config, domain, datetime.now(UTC))
    if not outcomes:
        print(f"no pending keys{' for ' + domain if domain else ''}: nothing to activate", file=out)
        return 0
    for stored, refusal in outcomes:
        notes = signing_notes(config, stored.key.domain, stored.key.algorithm)
        if refusal is None and notes:
            why = "; ".join(n.reason for n in notes)
            print(f"{describe(stored)}: active, but it does not sign: {why}", file=out)
            print_not_signing(config, notes, out)
        elif refusal is None:
            print(
                f"{describe(stored)}: active; it signs from now on (the milter picks it up at once)",
                file=out,
            )
        else:
            print(refusal.reason, file=out)
    return 0 if all(r is None for _, r in outcomes) else EX_FAILED


def find_key(keys: Sequence[StoredKey], domain: str, selector: str) -> StoredKey | None:
    return next((k for k in keys if k.key.domain == domain and k.key.selector == selector), None)


def retire_command(
    config: Config,
    domain: str,
    selector: str,
    force: bool,
    revoke: bool,
    publish: bool,
    out: TextIO = sys.stdout,
) -> int:
    now = datetime.now(UTC)
    tsig = publish_settings(config) if publish else None  # refused before anything changes
    with store_lock(config.signing.keys):
        keys = load_keys(config)
        target = find_key(keys, domain, selector)
        if target is None:
            print(
                f"reputable keys retire: no key {domain} {selector} in {config.signing.keys}",
                file=out,
            )
            return EX_USAGE
        plan = plan_retirement(target, keys, now, policy_of(config), force=force)
        if isinstance(plan, Refusal):
            print(f"reputable keys retire: {plan.reason}", file=out)
            return EX_FAILED
        if tsig is not None:
            # DNS first: if the update fails, the key is not retired and the command can be rerun.
            withdraw_record(config, target, revoke, tsig)
        apply_changes([Change(target, replace(plan.meta, revoked=revoke))])
    name = record_name(selector, domain)
    if tsig is not None:
        print(
            f"{describe(target)}: retired; {name} {'revoked (empty p=)' if revoke else 'removed'} by RFC 2136 update.",
            file=out,
        )
    elif revoke:
        print(
            f'{describe(target)}: retired. Replace its record with: {name} TXT "v=DKIM1; p="',
            file=out,
        )
    else:
        print(f"{describe(target)}: retired. Remove its DNS record {name} TXT now.", file=out)
    return 0


def withdraw_record(config: Config, stored: StoredKey, revoke: bool, tsig: TsigKey) -> None:
    update_record(config, stored, ["v=DKIM1; p="] if revoke else None, tsig)


def list_rows(
    config: Config, domain: str | None, check_dns: bool, now: datetime
) -> list[dict[str, object]]:
    policy = policy_of(config)
    signed, algorithms = signing_domains(config), config.signing.algorithms
    rows: list[dict[str, object]] = []
    for stored in load_keys(config):
        if domain is not None and stored.key.domain != domain:
            continue
        wants_dns = check_dns and stored.meta.state is not KeyState.RETIRED
        check = (
            check_record(config, stored)
            if wants_dns
            else RecordCheck(DnsStatus.NOT_CHECKED, "not checked")
        )
        meta = stored.meta
        unsigned = not_signing(stored.key.domain, stored.key.algorithm, signed, algorithms)
        rows.append(
            {
                "domain": stored.key.domain,
                "selector": stored.key.selector,
                "algorithm": stored.key.algorithm.value,
                "bits": meta.bits,
                "state": meta.state.value,
                "created": format_time(meta.created),
                "changed": format_time(meta.changed),
                "age_days": (now - meta.created).days,
                "dns": check.status.value,
                "dns_detail": check.detail,
                "next": next_step(stored, check, now, policy, unsigned),
                "warnings": warnings(stored, check, now, policy, unsigned),
            }
        )
    return rows


def list_command(
    config: Config, domain: str | None, as_json: bool, check_dns: bool, out: TextIO = sys.stdout
) -> int:
    rows = list_rows(config, domain, check_dns, datetime.now(UTC))
    if as_json:
        print(json.dumps({"keys": rows}, indent=2), file=out)
        return 0
    if not rows:
        print(f"no keys in {config.signing.keys}", file=out)
        return 0
    header = ("DOMAIN", "SELECTOR", "ALGORITHM", "BITS", "STATE", "AGE", "DNS")
    table = [header] + [
        (
            str(r["domain"]),
            str(r["selector"]),
            str(r["algorithm"]),
            str(r["bits"]),
            str(r["state"]),
            f"{r['age_days']}d",
            str(r["dns"]),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for index, line in enumerate(table):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip(),
            file=out,
        )
        if index:
            row = rows[index - 1]
            print(f"    next: {row['next']}", file=out)
            for warning in row["warnings"]:  # type: ignore[attr-defined]
                print(f"    warning: {warning}", file=out)
    return 0
