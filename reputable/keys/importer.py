"""`reputable keys import`: an OpenDKIM or dkimpy-milter set-up mapped onto the key store.

Pure: the parsers (`parse_conf`, `parse_key_table`, `parse_signing_table`,
`parse_private_key`) and the mappings (`map_tables`, `map_settings`). I/O at
the edges: `plan_*` only read (the configuration, its tables, the keys),
`perform_import` writes the key store, `import_command` prints the report.
The source files are never written to.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.config import DEFAULT_OVERSIGN, Config, parse_domain, parse_socket
from reputable.errors import EX_CONFIG, ConfigError, Problem
from reputable.keys.locking import store_lock
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.record import public_key_base64
from reputable.keys.selector import is_valid_selector
from reputable.keys.store import (
    PrivateKey,
    StoredKey,
    algorithm_of,
    bits_of,
    key_path,
    read_store,
    write_key,
)
from reputable.signing.algorithm import Algorithm
from reputable.signing.canonicalization import Canonicalization
from reputable.signing.signature import SigningKey

EX_USAGE = 64
MAX_INCLUDE_DEPTH = 5  # opendkim.conf(5): Include nests at most five levels
_PATH_PREFIXES = ("/", "./", "../")  # opendkim.conf(5) KeyTable: what marks a file, not key data
_UNSUPPORTED_DATASETS = (
    "db:",
    "dsn:",
    "ldap:",
    "ldaps:",
    "ldapi:",
    "lua:",
    "memcache:",
    "mdb:",
    "erlang:",
    "redis:",
    "repute:",
    "socket:",
)
_KEY_LINE = (
    "KEYNAME DOMAIN:SELECTOR:/path/to/key, e.g. "
    "'mail._domainkey.example.com example.com:mail:/etc/dkimkeys/example.com.private'"
)
_EXPORT_HINT = (
    "export it to a flat file and run: reputable keys import --key-table FILE --signing-table FILE"
)


class Software(StrEnum):
    OPENDKIM = "OpenDKIM"
    DKIMPY_MILTER = "dkimpy-milter"


# --- the plan ---


@dataclass(frozen=True, slots=True)
class ImportedKey:
    domain: str  # A-label, lower case
    selector: str
    source: Path  # where the private key was read
    algorithm: Algorithm
    bits: int = 0


@dataclass(frozen=True, slots=True)
class TomlSetting:
    """One reputable.toml line worth carrying over from the old milter's configuration."""

    section: str
    key: str
    value: str | tuple[str, ...]

    @property
    def line(self) -> str:
        # JSON's string escapes are all valid in a TOML basic string.
        if isinstance(self.value, str):
            return f"{self.key} = {json.dumps(self.value)}"
        return f"{self.key} = [{', '.join(json.dumps(v) for v in self.value)}]"

    def __str__(self) -> str:
        return f"[{self.section}] {self.line}"


@dataclass(frozen=True, slots=True)
class ImportPlan:
    keys: tuple[ImportedKey, ...]
    notes: tuple[str, ...]  # every source line not mapped as it is, and why
    settings: tuple[TomlSetting, ...] = ()
    origin: str = ""  # the file the plan was made from
    software: Software = Software.OPENDKIM


# --- opendkim.conf / dkimpy-milter.conf (pure) ---


@dataclass(frozen=True, slots=True)
class ConfLine:
    number: int
    name: str  # as written; OpenDKIM compares names case-insensitively
    value: str
    source: str  # the file's name, for notes

    @property
    def where(self) -> str:
        return f"{self.source} line {self.number}"

    @property
    def text(self) -> str:
        return f"{self.name} {self.value}".strip()


def conf_lines(text: str, source: str = "opendkim.conf") -> tuple[ConfLine, ...]:
    lines: list[ConfLine] = []
    for number, content in _content_lines(text):
        parts = content.split(None, 1)
        name, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
        lines.append(ConfLine(number, name, value, source))
    return tuple(lines)


def parse_conf(text: str, source: str = "opendkim.conf") -> dict[str, ConfLine]:
    """Setting name (lower case) -> its line; the last one counts, as in OpenDKIM's config_get."""
    return {line.name.lower(): line for line in conf_lines(text, source)}


def _content_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), 1):
        # opendkim.conf(5) and the data set files: '#' starts a comment anywhere on a line.
        content = raw.split("#", 1)[0].strip()
        if content:
            yield number, content


class DatasetKind(StrEnum):
    LIST = "list"
    FILE = "file"
    REFILE = "refile"
    UNSUPPORTED = "unsupported"


def dataset_kind(value: str) -> tuple[DatasetKind, str]:
    """What an opendkim(8) "data set" value is, and the list or path it holds."""
    for prefix, kind in (("file:", DatasetKind.FILE), ("refile:", DatasetKind.REFILE)):
        if value.startswith(prefix):
            return kind, value[len(prefix) :]
    if value.startswith("csl:"):
        return DatasetKind.LIST, value[4:]
    if value.startswith(_UNSUPPORTED_DATASETS) or value.endswith(".db"):
        return DatasetKind.UNSUPPORTED, value
    if value.startswith(_PATH_PREFIXES):
        return DatasetKind.FILE, value
    return DatasetKind.LIST, value


def dataset_items(text: str) -> tuple[str, ...]:
    """The entries of a data set file: the first word of every line."""
    return tuple(content.split()[0] for _, content in _content_lines(text))


def list_items(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


# --- KeyTable and SigningTable (pure) ---


@dataclass(frozen=True, slots=True)
class KeyEntry:
    name: str
    domain: str  # A-label, or "%": the From domain
    selector: str
    key_file: str  # as written
    line: int
    label: str  # "KeyTable" or "KeyTableEd25519"

    @property
    def where(self) -> str:
        return f"{self.label} line {self.line}"


@dataclass(frozen=True, slots=True)
class KeyTable:
    entries: tuple[KeyEntry, ...]
    problems: tuple[Problem, ...]
    source: str  # the file, for problems
    invalid_names: frozenset[str] = frozenset()  # names on lines already reported

    def find(self, name: str) -> KeyEntry | None:
        return next((e for e in self.entries if e.name == name), None)


@dataclass(frozen=True, slots=True)
class SigningRule:
    pattern: str
    key_name: str
    signer: str  # the optional second field (the i= identity), "" when absent
    line: int
    label: str

    @property
    def where(self) -> str:
        return f"{self.label} line {self.line}"


@dataclass(frozen=True, slots=True)
class SigningTable:
    rules: tuple[SigningRule, ...]
    refile: bool
    problems: tuple[Problem, ...]
    source: str


def _shown(field: str) -> str:
    # A KeyTable may hold key data in place of a path: never echo a private key.
    return field if field.startswith(_PATH_PREFIXES) or len(field) <= 64 else "<key data>"


def parse_key_table(text: str, source: str = "KeyTable", label: str = "KeyTable") -> KeyTable:
    """KeyTable lines `KEYNAME DOMAIN:SELECTOR:KEYFILE`; every bad line becomes a problem."""
    entries: list[KeyEntry] = []
    problems: list[Problem] = []
    invalid: set[str] = set()
    seen: dict[str, int] = {}
    for number, content in _content_lines(text):
        parts = content.split(None, 1)
        name, value = parts[0], (parts[1].strip() if len(parts) > 1 else "")
        fields = [f.strip() for f in value.split(":", 2)] if value else []
        shown = " ".join([name, ":".join(_shown(f) for f in fields)]).strip()
        why = _key_line_problem(fields, name, seen)
        if why:
            problems.append(Problem(source, f"line {number}", f"'{shown}'", why))
            invalid.add(name)
            continue
        domain = fields[0] if fields[0] == "%" else parse_domain(fields[0])
        entries.append(KeyEntry(name, domain, fields[1].lower(), fields[2], number, label))
        seen[name] = number
    return KeyTable(tuple(entries), tuple(problems), source, frozenset(invalid))


def _key_line_problem(fields: list[str], name: str, seen: Mapping[str, int]) -> str:
    if len(fields) < 3 or not all(fields):
        return f"expected {_KEY_LINE} (this line has {len([f for f in fields if f])} of 3 fields)"
    domain, selector, key_file = fields
    if domain != "%":
        try:
            parse_domain(domain)
        except ValueError:
            return "expected a domain name (or %, the From domain) before the first ':'"
    if not is_valid_selector(selector.lower()):
        return "expected a selector (letters, digits, '-' and '.') between the two ':'"
    if not key_file.startswith(_PATH_PREFIXES):
        return (
            "expected the path of the key file (starting with /, ./ or ../): "
            "put the key data in a file, mode 0600, and name that file here"
        )
    if name in seen:
        return f"a key named '{name}' is on line {seen[name]} already: keep one of them"
    return ""


def parse_signing_table(
    text: str, refile: bool, source: str = "SigningTable", label: str = "SigningTable"
) -> SigningTable:
    """SigningTable lines `PATTERN KEYNAME[:SIGNER]`."""
    rules: list[SigningRule] = []
    problems: list[Problem] = []
    for number, content in _content_lines(text):
        parts = content.split(None, 1)
        if len(parts) < 2:
            allowed = "expected PATTERN KEYNAME, e.g. '*@example.com mail._domainkey.example.com'"
            problems.append(Problem(source, f"line {number}", f"'{content}'", allowed))
            continue
        key_name, _, signer = parts[1].strip().partition(":")
        rules.append(SigningRule(parts[0], key_name.strip(), signer.strip(), number, label))
    return SigningTable(tuple(rules), refile, tuple(problems), source)


class Scope(StrEnum):
    DOMAIN = "domain"  # exactly one domain
    ALL = "all"  # every sender domain
    OTHER = "other"  # subdomains, odd wildcards, no domain at all


@dataclass(frozen=True, slots=True)
class PatternScope:
    scope: Scope
    domain: str = ""  # the domain, for Scope.DOMAIN
    note: str = ""  # what the pattern covers beyond (or instead of) that domain


def pattern_scope(pattern: str, refile: bool) -> PatternScope:
    """Which one domain a SigningTable pattern selects, if any, and what else it covers."""
    text = pattern.strip().lower()
    local, at, host = text.rpartition("@")
    if host == "*" or text == "*":
        return PatternScope(
            Scope.ALL,
            note="covers every sender domain; reputable signs only the domains in "
            "[signing] domains: add the ones you send from",
        )
    for prefix in (".", "*."):
        if host.startswith(prefix):
            return _subdomains(host[len(prefix) :])
    if host.startswith("*") and "*" not in host[1:]:
        scope = _exact(host[1:].lstrip("."))
        extra = f"also matches other domains ending in '{host[1:]}'; reputable signs exactly {{}}"
        return PatternScope(scope.scope, scope.domain, scope.note or extra.format(scope.domain))
    if "*" in host:
        return PatternScope(
            Scope.OTHER,
            note="is a wildcard reputable cannot turn into domains: "
            "add the domains it stands for to [signing] domains",
        )
    scope = _exact(host)
    if scope.scope is not Scope.DOMAIN or local in ("", "*"):
        if at and local == "*" and not refile:
            return PatternScope(scope.scope, scope.domain, _plain_file_wildcard(scope.domain))
        return scope
    return PatternScope(
        Scope.DOMAIN,
        scope.domain,
        f"selects the key for some senders only; reputable picks keys per domain: "
        f"all {scope.domain} mail is signed",
    )


def _exact(host: str) -> PatternScope:
    try:
        return PatternScope(Scope.DOMAIN, parse_domain(host))
    except ValueError:
        return PatternScope(Scope.OTHER, note="names no valid domain: not mapped")


def _subdomains(parent: str) -> PatternScope:
    return PatternScope(
        Scope.OTHER,
        note=f"covers subdomains of {parent}; reputable signs exact domains: "
        "add them to [signing] domains",
    )


def _plain_file_wildcard(domain: str) -> str:
    return (
        f"is a wildcard in a plain-file SigningTable, where OpenDKIM takes '*' literally "
        f"(wildcards need refile:): check that {domain} mail was signed; mapped to {domain}"
    )


# --- from tables to keys (pure) ---


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A key the tables ask for, before its file is read."""

    domain: str
    selector: str
    key_file: str  # as written, '%' replaced by the domain
    where: str  # the line that maps it


@dataclass(frozen=True, slots=True)
class TableMapping:
    refs: tuple[KeyRef, ...]
    notes: tuple[str, ...]
    problems: tuple[Problem, ...]


def map_tables(
    signing: Sequence[tuple[SigningTable, Sequence[KeyTable]]], key_tables: Sequence[KeyTable]
) -> TableMapping:
    """The keys each SigningTable rule reaches in the KeyTables it names keys from.

    With no SigningTable at all, every KeyTable key with a fixed domain is taken.
    """
    refs: list[KeyRef] = []
    notes: list[str] = []
    problems = [p for t in key_tables for p in t.problems]
    used: set[tuple[str, str]] = set()
    for table, tables in signing:
        problems.extend(table.problems)
        for rule in table.rules:
            _map_rule(rule, table, tables, refs, notes, problems, used)
    if not signing:
        return _map_key_tables_alone(key_tables, problems)
    for kt in key_tables:
        notes.extend(
            f"{e.where}: key '{e.name}' is not named in any SigningTable line: not imported "
            "(the milter never signed with it)"
            for e in kt.entries
            if (kt.source, e.name) not in used
        )
    return TableMapping(tuple(refs), tuple(notes), tuple(problems))


def _map_rule(
    rule: SigningRule,
    table: SigningTable,
    tables: Sequence[KeyTable],
    refs: list[KeyRef],
    notes: list[str],
    problems: list[Problem],
    used: set[tuple[str, str]],
) -> None:
    scope = pattern_scope(rule.pattern, table.refile)
    if rule.signer:
        notes.append(
            f"{rule.where}: signer '{rule.signer}' (the i= tag) is not carried over: reputable "
            "signs without i=, which stands for the whole domain (RFC 6376 §3.5)"
        )
    uses = _rule_uses(rule, scope, tables)
    if not uses:
        if rule.key_name == "%" and scope.scope is not Scope.DOMAIN:
            notes.append(f"{rule.where}: '{rule.pattern}' {scope.note}")
        elif not any(rule.key_name in t.invalid_names for t in tables):
            problems.append(_unknown_key(rule, scope, table, tables))
        return
    own: list[str] = []
    for kt, entry, domain in uses:
        used.add((kt.source, entry.name))
        ref, note = _ref_for(rule, scope, entry, domain)
        refs.extend([ref] if ref else [])
        own.extend([note] if note and note not in own else [])
    if scope.note and not own:
        notes.append(f"{rule.where}: '{rule.pattern}' {scope.note}")
    notes.extend(own)


def _rule_uses(
    rule: SigningRule, scope: PatternScope, tables: Sequence[KeyTable]
) -> list[tuple[KeyTable, KeyEntry, str]]:
    """(table, entry, the domain the pattern selects or "") for every key the rule names."""
    if rule.key_name != "%":
        return [(t, e, scope.domain) for t in tables if (e := t.find(rule.key_name))]
    # opendkim.conf(5) SigningTable: a key name of "%" is the From domain itself.
    if scope.scope is Scope.DOMAIN:
        return [(t, e, scope.domain) for t in tables if (e := t.find(scope.domain))]
    if scope.scope is Scope.ALL:
        return [(t, e, d) for t in tables for e in t.entries if (d := _domain_or_empty(e.name))]
    return []


def _domain_or_empty(name: str) -> str:
    try:
        return parse_domain(name)
    except ValueError:
        return ""


def _ref_for(
    rule: SigningRule, scope: PatternScope, entry: KeyEntry, domain: str
) -> tuple[KeyRef | None, str]:
    """The key one rule/entry pair imports, and a note when that differs from the milter."""
    where, pattern = rule.where, rule.pattern
    if entry.domain == "%":
        if domain:
            file = entry.key_file.replace("%", domain)
            return KeyRef(domain, entry.selector, file, where), ""
        if scope.scope is Scope.ALL:
            return None, (
                f"{where}: '{pattern}' signs every From domain with key '{entry.name}' (%); "
                "reputable needs the domains named: write a SigningTable with a "
                f"'*@DOMAIN {entry.name}' line per domain and import with --signing-table"
            )
        return None, ""
    if domain and domain != entry.domain:
        return None, (
            f"{where}: '{pattern}' signs {domain} mail with d={entry.domain}; reputable signs "
            f"with the From domain's own keys: `reputable keys new {domain}` makes one"
        )
    if domain:
        return KeyRef(domain, entry.selector, entry.key_file, where), ""
    if scope.scope is Scope.ALL:
        return KeyRef(entry.domain, entry.selector, entry.key_file, where), (
            f"{where}: '{pattern}' signs every sender domain with d={entry.domain}; reputable "
            f"signs each domain with its own keys: mapped to {entry.domain} only"
        )
    return None, ""


def _unknown_key(
    rule: SigningRule, scope: PatternScope, table: SigningTable, tables: Sequence[KeyTable]
) -> Problem:
    names = [e.name for t in tables for e in t.entries]
    known = ", ".join(f"'{n}'" for n in names[:5]) + (", ..." if len(names) > 5 else "")
    where = " or ".join(t.source for t in tables)
    return Problem(
        table.source,
        f"line {rule.line}",
        f"'{rule.pattern} {rule.key_name}'",
        f"a key name{' (here: ' + scope.domain + ')' if rule.key_name == '%' else ''} "
        f"from {where} ({known or 'it has none'}); "
        "the milter fails mail that matches this line: fix or remove it",
    )


def _map_key_tables_alone(key_tables: Sequence[KeyTable], problems: list[Problem]) -> TableMapping:
    refs: list[KeyRef] = []
    notes = ["no SigningTable given: every KeyTable key with a fixed domain is imported"]
    for kt in key_tables:
        for e in kt.entries:
            if e.domain == "%":
                notes.append(
                    f"{e.where}: key '{e.name}' signs as the From domain (%); without a "
                    "SigningTable its domains are unknown: not imported"
                )
            else:
                refs.append(KeyRef(e.domain, e.selector, e.key_file, e.where))
    return TableMapping(tuple(refs), tuple(notes), tuple(problems))


# --- settings worth carrying over (pure) ---

Expand = Callable[[str], tuple[tuple[str, ...], str]]  # data set value -> (items, error)

_PROCESS = frozenset(
    [
        "userid",
        "umask",
        "pidfile",
        "background",
        "autorestart",
        "autorestartcount",
        "autorestartrate",
        "enablecoredumps",
        "temporarydirectory",
        "keeptemporaryfiles",
        "quarantine",
    ]
)
_LOGGING = frozenset(
    ["syslogsuccess", "syslogfacility", "syslogname", "logwhy", "logresults", "debuglevel"]
)
_VERIFYING = frozenset(
    [
        "trustanchorfile",
        "nameservers",
        "resolverconfiguration",
        "dnstimeout",
        "dnsconnect",
        "querycache",
        "minimumkeybits",
        "authservid",
        "authservidwithjobid",
        "alwaysaddarheader",
        "externalignorelist",
        "on-badsignature",
        "on-default",
        "on-dnserror",
        "on-internalerror",
        "on-keynotfound",
        "on-nosignature",
        "on-security",
        "on-signatureerror",
        "boguskey",
        "unprotectedkey",
        "keepauthresults",
        "removearall",
        "removearfrom",
        "maximumsignaturestoverify",
        "mustbesigned",
        "trustsignaturesfrom",
        "diagnosticdirectory",
        "dnsoverride",
        "macrolistverify",
        "allowsha1only",
        "noheaderb",
        "addallsignatureresults",
    ]
)
_HANDLED = frozenset(["include", "basedirectory", "changerootdirectory"])


def map_settings(
    lines: Sequence[ConfLine], consumed: frozenset[str], software: Software, expand: Expand
) -> tuple[tuple[str, ...], tuple[TomlSetting, ...]]:
    """A note for every line the key mapping did not use, and the reputable.toml lines to carry."""
    last = {line.name.lower(): line for line in lines}
    notes: list[str] = []
    settings: list[TomlSetting] = []
    for line in lines:
        name = line.name.lower()
        if last[name] is not line:
            notes.append(f"{line.where}: '{line.text}': set again at {last[name].where}")
            continue
        if name in consumed or name in _HANDLED:
            continue
        why, carried = _setting_note(line, software, expand)
        notes.append(f"{line.where}: '{line.text}': {why}")
        settings.extend(carried)
    return tuple(notes), tuple(settings)


def _setting_note(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    name = line.name.lower()
    special = _SPECIAL.get(name)
    if special is not None:
        return special(line, software, expand)
    if name in _PROCESS:
        return "how the daemon runs; reputable's own service unit covers it: not carried over", ()
    if name in _LOGGING:
        return "reputable logs one line per message, signed or not and why: not carried over", ()
    if name in _VERIFYING:
        return "a verifying setting; reputable only signs: not carried over", ()
    return "no matching reputable setting: not carried over", ()


def _carried(*settings: TomlSetting) -> tuple[str, tuple[TomlSetting, ...]]:
    return "carried over as " + "; ".join(str(s) for s in settings), settings


def _canonicalization(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    header, _, body = line.value.lower().partition("/")
    # Unlike a c= tag, both milters apply a lone value to header and body alike.
    body = body or header
    try:
        pair = (Canonicalization(header), Canonicalization(body))
    except ValueError:
        return "expected relaxed or simple (optionally header/body): not carried over", ()
    if pair == (Canonicalization.RELAXED, Canonicalization.RELAXED):
        return "the same as reputable's default (relaxed/relaxed): nothing to set", ()
    return _carried(TomlSetting("signing", "canonicalization", f"{header}/{body}"))


def _internal_hosts(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    items, error = expand(line.value)
    if error:
        return f"{error}: list those hosts in [trust] internal_hosts yourself", ()
    kept: list[str] = []
    dropped: list[str] = []
    for item in items:
        kept_now = _network_of(item)
        kept.extend(kept_now)
        if not kept_now:
            dropped.append(item)
    why, carried = "", tuple[TomlSetting, ...]()
    if kept:
        why, carried = _carried(TomlSetting("trust", "internal_hosts", tuple(dict.fromkeys(kept))))
    if dropped:
        left = ", ".join(f"'{d}'" for d in dropped)
        why = (why + "; " if why else "") + (
            f"not carried over: {left} (reputable takes addresses and networks only, "
            "no host names or '!' exclusions)"
        )
    return why or "no hosts listed: not carried over", carried


def _network_of(item: str) -> list[str]:
    # opendkim(8) PeerList form: an IPv6 address may be in brackets, "[2001:db8::]/32".
    text = item.strip().replace("[", "").replace("]", "")
    if text.lower() == "localhost":
        return ["127.0.0.1", "::1"]
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return []
    full = network.prefixlen == network.max_prefixlen
    return [str(network.network_address) if full else str(network)]


def _oversign(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    items, error = expand(line.value)
    if error:
        return f"{error}: not carried over", ()
    extra = [h for h in dict.fromkeys(i.lower() for i in items) if h not in DEFAULT_OVERSIGN]
    if not extra:
        return (
            f"reputable oversigns {', '.join(DEFAULT_OVERSIGN)} by default: nothing to set",
            (),
        )
    return _carried(TomlSetting("signing", "oversign", (*DEFAULT_OVERSIGN, *extra)))


def _sign_headers(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    items, _ = expand(line.value)
    names = tuple(dict.fromkeys(["from", *(i.lower() for i in items if "*" not in i)]))
    example = TomlSetting("signing", "headers", names)
    return (
        "reputable signs its own list of header fields (rspamd's, which covers these); "
        f"to sign exactly these instead, set {example}",
        (),
    )


def _socket(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    kind, _, rest = line.value.partition(":")
    port, _, host = rest.partition("@")
    host = host.strip("[]")
    loopback = {"inet": "127.0.0.1", "inet6": "::1"}
    candidate = f"unix:{rest}" if kind in ("local", "unix") else f"{kind}:{port}@{host}"
    if kind in loopback and not host:
        candidate = f"{kind}:{port}@{loopback[kind]}"
    try:
        socket = parse_socket(candidate)
    except ValueError as exc:
        return f"reputable expects {exc}: not carried over", ()
    why, carried = _carried(TomlSetting("milter", "socket", socket.libmilter))
    if kind in loopback and not host:
        why += f" ({software} listened on every interface; only Postfix needs to reach it)"
    return why, carried


def _syslog(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    if line.value[:1] in ("T", "t", "Y", "y", "1"):
        return _carried(TomlSetting("log", "target", "syslog"))
    return "reputable logs to standard error by default (the journal, under systemd)", ()


def _mode(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    if "s" not in line.value:
        return f"{software} did not sign in this mode; its keys are imported all the same", ()
    if "v" in line.value:
        return (
            "reputable only signs: inbound mail is no longer verified nor given "
            "Authentication-Results; keep a verifier if you rely on them",
            (),
        )
    return "signing only, like reputable: nothing to set", ()


def _subdomains_setting(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    if line.value[:1] in ("T", "t", "Y", "y", "1"):
        return "reputable signs exact domains: add each subdomain to [signing] domains", ()
    return "exact domains only, like reputable: nothing to set", ()


def _algorithm(
    line: ConfLine, software: Software, expand: Expand
) -> tuple[str, tuple[TomlSetting, ...]]:
    if line.value.lower() == "rsa-sha1":
        return "reputable never signs with rsa-sha1 (RFC 8301); the same keys sign rsa-sha256", ()
    return "reputable takes the algorithm from each key: see the algorithms line below", ()


def _note(text: str) -> Callable[[ConfLine, Software, Expand], tuple[str, tuple[TomlSetting, ...]]]:
    def note(line: ConfLine, software: Software, expand: Expand) -> tuple[str, tuple[()]]:
        return text.format(software=software), ()

    return note


_SPECIAL: Mapping[
    str, Callable[[ConfLine, Software, Expand], tuple[str, tuple[TomlSetting, ...]]]
] = {
    "canonicalization": _canonicalization,
    "internalhosts": _internal_hosts,
    "oversignheaders": _oversign,
    "signheaders": _sign_headers,
    "socket": _socket,
    "syslog": _syslog,
    "mode": _mode,
    "subdomains": _subdomains_setting,
    "signaturealgorithm": _algorithm,
    "omitheaders": _note("reputable signs only the fields in [signing] headers: not carried over"),
    "multiplesignatures": _note(
        "reputable adds one signature per configured algorithm with the From domain's key"
    ),
    "requiresafekeys": _note("reputable always refuses keys others can read: nothing to set"),
    "peerlist": _note("reputable has no list of clients to pass over: not carried over"),
    "macrolist": _note(
        "reputable decides by client address ([trust] internal_hosts) and SMTP AUTH "
        "([trust] authenticated): not carried over"
    ),
    "dontsignmailto": _note("reputable signs whoever the recipients are: not carried over"),
    "senderheaders": _note("reputable takes the signing domain from From only (RFC 6376 §5.4)"),
    "domain": _note("not used: the keys come from the KeyTable"),
    "selector": _note("not used: the keys come from the KeyTable"),
    "keyfile": _note("not used: the keys come from the KeyTable"),
    "selectored25519": _note("not used: the keys come from the KeyTable"),
    "signingtable": _note("not used: there is no KeyTable for it to name keys from"),
    "signingtableed25519": _note("not used: there is no KeyTableEd25519 to name keys from"),
    "keyfileed25519": _note("not used: the keys come from the KeyTable"),
}


# --- private keys ---


def parse_private_key(data: bytes) -> PrivateKey:
    """A PEM key (PKCS#1 or PKCS#8), DER, or dkimpy's base64 Ed25519 seed; ValueError says why not.

    dkimpy (dknewkey, dkimpy-milter's KeyFileEd25519) stores an Ed25519 key as
    the base64 of its 32-byte RFC 8032 seed, not as PEM.
    """
    text = data.strip()
    if text.startswith(b"v=DKIM1") or b"IN\tTXT" in text or b"IN TXT" in text:
        raise ValueError("a private key; this is a DNS record: name the private key file")
    if b"-----BEGIN" in text:
        if b"PUBLIC KEY-----" in text:
            raise ValueError("a private key; this file holds a public key")
        loaded = _load(lambda: serialization.load_pem_private_key(text, password=None))
    else:
        loaded = _load(lambda: _load_raw(data))
    if not isinstance(loaded, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"an RSA or Ed25519 key, not {type(loaded).__name__}")
    return loaded


def _load(load: Callable[[], object]) -> object:
    try:
        return load()
    except TypeError:
        raise ValueError("a key without a passphrase (a milter cannot type one in)") from None
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise ValueError(
            "a PEM private key (RSA or Ed25519) or dkimpy's base64 Ed25519 seed"
        ) from None


def _load_raw(data: bytes) -> object:
    try:
        raw = base64.b64decode(b"".join(data.split()), validate=True)
    except binascii.Error:
        return serialization.load_der_private_key(data, password=None)
    if len(raw) == 32:
        return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    return serialization.load_der_private_key(raw, password=None)


def read_private_key(path: Path) -> PrivateKey:
    """The key in `path`, or a ConfigError naming the file (never its contents)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(str(path), "private key", "unreadable", reason)]) from None
    try:
        return parse_private_key(data)
    except ValueError as exc:
        raise ConfigError(
            [Problem(str(path), "private key", "not a key", f"expected {exc}")]
        ) from None


def _same_key(a: PrivateKey, b: PrivateKey) -> bool:
    return type(a) is type(b) and public_key_base64(a) == public_key_base64(b)


# --- planning (I/O: reads only) ---


@dataclass(frozen=True, slots=True)
class _Paths:
    """Where relative names and chrooted key files really are."""

    base: Path  # BaseDirectory, else the configuration's directory
    chroot: Path | None = None

    def resolve(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.base / path

    def key_file(self, name: str) -> Path:
        path = self.resolve(name)
        # OpenDKIM reads keys after chroot(2): a key path may be inside ChangeRootDirectory.
        if self.chroot is not None and not path.exists():
            inside = self.chroot / path.relative_to(path.anchor)
            if inside.exists():
                return inside
        return path


def plan_opendkim(conf: Path) -> ImportPlan:
    """Read opendkim.conf, the tables and key files it names; nothing is written."""
    return _plan_conf(conf, Software.OPENDKIM)


def plan_dkimpy_milter(conf: Path) -> ImportPlan:
    """Read dkimpy-milter.conf, its tables and key files; nothing is written."""
    return _plan_conf(conf, Software.DKIMPY_MILTER)


def plan_tables(key_table: Path, signing_table: Path | None, refile: bool) -> ImportPlan:
    """Import from table files named directly (key paths relative to the KeyTable's folder)."""
    kt = _key_table_at(key_table, "KeyTable")
    signing = []
    if signing_table is not None:
        signing = [(_signing_table_at(signing_table, "SigningTable", refile), [kt])]
    mapping = map_tables(signing, [kt])
    paths = _Paths(key_table.resolve().parent)
    return _assemble(mapping, (), paths, str(key_table), Software.OPENDKIM)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(str(path), what, "unreadable", reason)]) from None


def _read_conf(path: Path, depth: int = 0) -> tuple[ConfLine, ...]:
    lines: list[ConfLine] = []
    for line in conf_lines(_read_text(path, "(file)"), path.name):
        lines.append(line)
        if line.name.lower() == "include":
            if depth >= MAX_INCLUDE_DEPTH:
                problem = Problem(
                    str(path),
                    f"line {line.number}",
                    f"'{line.text}'",
                    "at most 5 levels of Include",
                )
                raise ConfigError([problem])
            lines.extend(_read_conf(path.parent / line.value, depth + 1))
    return tuple(lines)


def _conf_table_path(line: ConfLine, conf: Path, paths: _Paths) -> tuple[Path, bool]:
    """The file a KeyTable/SigningTable setting names, and whether it is a refile."""
    kind, location = dataset_kind(line.value)
    if kind in (DatasetKind.FILE, DatasetKind.REFILE):
        return paths.resolve(location), kind is DatasetKind.REFILE
    allowed = f"a flat file (file:/path, refile:/path or /path); {_EXPORT_HINT}"
    raise ConfigError([Problem(str(conf), line.name, line.value, allowed)])


def _key_table_at(path: Path, label: str) -> KeyTable:
    return parse_key_table(_read_text(path, label), str(path), label)


def _signing_table_at(path: Path, label: str, refile: bool) -> SigningTable:
    return parse_signing_table(_read_text(path, label), refile, str(path), label)


def _plan_conf(conf: Path, software: Software) -> ImportPlan:
    lines = _read_conf(conf)
    settings = {line.name.lower(): line for line in lines}
    base = settings.get("basedirectory")
    chroot = settings.get("changerootdirectory")
    paths = _Paths(
        Path(base.value) if base else conf.resolve().parent,
        Path(chroot.value) if chroot else None,
    )
    expand = _expander(paths)
    if _table_settings(settings, software):
        mapping, consumed = _conf_tables(conf, settings, software, paths)
    else:
        mapping, consumed = _conf_single(conf, settings, software, expand)
    notes, carried = map_settings(lines, consumed, software, expand)
    return _assemble(mapping, notes, paths, str(conf), software, carried)


def _table_settings(settings: Mapping[str, ConfLine], software: Software) -> list[str]:
    names = ["keytable", "keytableed25519"] if software is Software.DKIMPY_MILTER else ["keytable"]
    return [n for n in names if n in settings]


def _conf_tables(
    conf: Path, settings: Mapping[str, ConfLine], software: Software, paths: _Paths
) -> tuple[TableMapping, frozenset[str]]:
    tables: dict[str, KeyTable] = {}
    for name in _table_settings(settings, software):
        path, _ = _conf_table_path(settings[name], conf, paths)
        tables[name] = _key_table_at(path, settings[name].name)
    # dkimpy-milter: SigningTable names keys in both KeyTables; SigningTableEd25519 in its own.
    pairs = [("signingtable", list(tables.values()))]
    if "keytableed25519" in tables:
        pairs.append(("signingtableed25519", [tables["keytableed25519"]]))
    signing = []
    for name, names_from in [(n, t) for n, t in pairs if n in settings]:
        path, refile = _conf_table_path(settings[name], conf, paths)
        # dkimpy-milter honours '*' in any SigningTable, refile: or not.
        refile = refile or software is Software.DKIMPY_MILTER
        signing.append((_signing_table_at(path, settings[name].name, refile), names_from))
    consumed = frozenset([*tables, *(n for n, _ in pairs if n in settings)])
    return map_tables(signing, list(tables.values())), consumed


_SINGLE_NAMES = {
    "selector": "Selector",
    "keyfile": "KeyFile",
    "selectored25519": "SelectorEd25519",
    "keyfileed25519": "KeyFileEd25519",
}


def _conf_single(
    conf: Path, settings: Mapping[str, ConfLine], software: Software, expand: Expand
) -> tuple[TableMapping, frozenset[str]]:
    """Domain + Selector + KeyFile (and dkimpy-milter's SelectorEd25519 + KeyFileEd25519)."""
    pairs = [("selector", "keyfile")]
    if software is Software.DKIMPY_MILTER:
        pairs.append(("selectored25519", "keyfileed25519"))
    present = [(s, k) for s, k in pairs if s in settings or k in settings]
    problems = [
        Problem(str(conf), _SINGLE_NAMES[name], "missing", f"it goes with {settings[other].text}")
        for selector, key_file in present
        for name, other in ((selector, key_file), (key_file, selector))
        if name not in settings
    ]
    if not present:
        allowed = "KeyTable and SigningTable, or Domain, Selector and KeyFile"
        problems.append(Problem(str(conf), "KeyTable / KeyFile", "not set", allowed))
    domains, notes = _single_domains(conf, settings, expand, problems)
    refs = [
        KeyRef(d, settings[s].value.lower(), settings[k].value, settings[k].where)
        for s, k in present
        if s in settings and k in settings
        for d in domains
    ]
    consumed = frozenset(n for pair in present for n in pair) | {"domain"}
    return TableMapping(tuple(refs), tuple(notes), tuple(problems)), consumed


def _single_domains(
    conf: Path, settings: Mapping[str, ConfLine], expand: Expand, problems: list[Problem]
) -> tuple[list[str], list[str]]:
    line = settings.get("domain")
    if line is None:
        problems.append(Problem(str(conf), "Domain", "missing", "the domains KeyFile signs for"))
        return [], []
    items, error = expand(line.value)
    if error:
        problems.append(Problem(str(conf), line.name, line.value, f"{error}; {_EXPORT_HINT}"))
    domains: list[str] = []
    notes: list[str] = []
    for item in items:
        scope = pattern_scope(item, refile=True)
        if scope.scope is Scope.DOMAIN and not scope.note:
            domains.append(scope.domain)
        else:
            notes.append(f"{line.where}: '{item}' {scope.note or 'names no single domain'}")
    return list(dict.fromkeys(domains)), notes


def _expander(paths: _Paths) -> Expand:
    def expand(value: str) -> tuple[tuple[str, ...], str]:
        kind, location = dataset_kind(value)
        if kind is DatasetKind.LIST:
            return list_items(location), ""
        if kind is DatasetKind.UNSUPPORTED:
            return (), f"'{value}' is a data set reputable cannot read"
        path = paths.resolve(location)
        try:
            return dataset_items(path.read_text(encoding="utf-8", errors="replace")), ""
        except OSError as exc:
            return (), f"could not read {path} ({exc.strerror or exc})"

    return expand


def _assemble(
    mapping: TableMapping,
    notes: Sequence[str],
    paths: _Paths,
    origin: str,
    software: Software,
    settings: Sequence[TomlSetting] = (),
) -> ImportPlan:
    """Read every key the mapping names; any problem on the way is a ConfigError."""
    problems = list(mapping.problems)
    keys: dict[tuple[str, str], tuple[ImportedKey, PrivateKey]] = {}
    for ref in mapping.refs:
        source = paths.key_file(ref.key_file)
        try:
            private_key = read_private_key(source)
        except ConfigError as exc:
            problems.extend(p for p in exc.problems if p not in problems)
            continue
        key = ImportedKey(
            ref.domain, ref.selector, source, algorithm_of(private_key), bits_of(private_key)
        )
        _add_key(keys, key, private_key, ref, problems)
    if problems:
        raise ConfigError(problems)
    imported = [k for k, _ in keys.values()]
    all_notes = [*notes, *mapping.notes, *_key_notes(imported)]
    return ImportPlan(tuple(imported), tuple(all_notes), tuple(settings), origin, software)


def _add_key(
    keys: dict[tuple[str, str], tuple[ImportedKey, PrivateKey]],
    key: ImportedKey,
    private_key: PrivateKey,
    ref: KeyRef,
    problems: list[Problem],
) -> None:
    earlier = keys.get((key.domain, key.selector))
    if earlier is None:
        keys[(key.domain, key.selector)] = (key, private_key)
    elif not _same_key(earlier[1], private_key):
        problems.append(
            Problem(
                str(earlier[0].source),
                f"{key.domain} selector {key.selector}",
                str(key.source),
                f"one key per selector ({ref.where} names another): only one of them "
                "matches the DNS record; remove the wrong line",
            )
        )


def _key_notes(keys: Sequence[ImportedKey]) -> list[str]:
    notes: list[str] = []
    for key in keys:
        if key.algorithm is Algorithm.RSA_SHA256 and key.bits < 2048:
            notes.append(
                f"{key.domain} selector {key.selector}: a {key.bits}-bit RSA key is weak and "
                "some receivers ignore it; replace it with `reputable keys new` (2048 bits)"
            )
    groups: dict[tuple[str, Algorithm], list[str]] = {}
    for key in keys:
        groups.setdefault((key.domain, key.algorithm), []).append(key.selector)
    for (domain, algorithm), selectors in groups.items():
        if len(selectors) > 1:
            # build_keyring: the newest active key signs; imported together, the last selector.
            notes.append(
                f"{domain} has {len(selectors)} {algorithm.value} keys ({', '.join(selectors)}): "
                f"reputable signs all its mail with one, '{max(selectors)}'; the others keep "
                "verifying while their records stay published"
            )
    return notes


# --- importing (I/O: writes the key store) ---


def keys_to_write(plan: ImportPlan, store: Path) -> tuple[ImportedKey, ...]:
    """The plan's keys not yet in the store; a different key already there is a ConfigError."""
    problems: list[Problem] = []
    new: dict[tuple[str, str], ImportedKey] = {}
    for key in plan.keys:
        pem = key_path(store, key.domain, key.selector)
        if not pem.exists():
            # Metadata without its key is a crash's leftover: write_key replaces it.
            new.setdefault((key.domain, key.selector), key)
            continue
        try:
            same = _same_key(read_private_key(pem), read_private_key(key.source))
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if not same:
            problems.append(
                Problem(
                    str(pem),
                    f"{key.domain} selector {key.selector}",
                    str(key.source),
                    "the store holds a different key for this selector: keep the one that "
                    "matches the published record, and move the other away",
                )
            )
    if problems:
        raise ConfigError(problems)
    return tuple(new.values())


def perform_import(plan: ImportPlan, store: Path, now: datetime) -> list[StoredKey]:
    """Copy the plan's keys into the store as active keys; returns the ones written.

    Keys already there (same domain, selector and key) are skipped, so a second
    run changes nothing. Every check runs before the first write.
    """
    try:
        with store_lock(store):
            return [_write(key, store, now) for key in keys_to_write(plan, store)]
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(str(store), "signing.keys", "not writable", reason)]) from None


def _write(key: ImportedKey, store: Path, now: datetime) -> StoredKey:
    private_key = read_private_key(key.source)
    created = _created(key.source, now)
    # Active at once: the record is published and the key was signing already.
    meta = KeyMetadata(key.algorithm, key.bits, created, KeyState.ACTIVE, now, activated=now)
    pem = write_key(store, key.domain, key.selector, private_key, meta)
    return StoredKey(SigningKey(key.domain, key.selector, key.algorithm, private_key), meta, pem)


def _created(source: Path, now: datetime) -> datetime:
    # The key file's age is the best record of the key's: key rotation counts from it.
    modified = datetime.fromtimestamp(os.stat(source).st_mtime, UTC)
    return min(modified, now)


# --- the command ---


def import_command(
    config: Config,
    opendkim_conf: str | None,
    dkimpy_conf: str | None,
    key_table: str | None,
    signing_table: str | None,
    dry_run: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    chosen = [a for a in (opendkim_conf, dkimpy_conf, key_table) if a]
    if len(chosen) != 1 or (signing_table and not key_table):
        print(
            "reputable keys import: give one of --opendkim-conf, --dkimpy-conf or "
            "--key-table (with --signing-table)",
            file=err,
        )
        return EX_USAGE
    store = config.signing.keys
    try:
        plan = _plan_for(opendkim_conf, dkimpy_conf, key_table, signing_table)
        todo = keys_to_write(plan, store)
        if not dry_run:
            perform_import(plan, store, datetime.now(UTC))
    except ConfigError as exc:
        print("reputable keys import: fix these and run it again:", file=err)
        for problem in exc.problems:
            print(f"  {problem}", file=err)
        return EX_CONFIG
    print_report(plan, todo, config, dry_run, out)
    return 0 if plan.keys else EX_CONFIG


def _plan_for(
    opendkim_conf: str | None, dkimpy_conf: str | None, key_table: str | None, signing: str | None
) -> ImportPlan:
    if opendkim_conf:
        return plan_opendkim(Path(opendkim_conf))
    if dkimpy_conf:
        return plan_dkimpy_milter(Path(dkimpy_conf))
    assert key_table is not None
    # A bare path honours wildcards, as a refile: table (and dkimpy-milter) would.
    refile = not (signing or "").startswith("file:")
    signing_path = Path(_strip_prefix(signing)) if signing else None
    return plan_tables(Path(_strip_prefix(key_table)), signing_path, refile)


def _strip_prefix(value: str) -> str:
    for prefix in ("file:", "refile:"):
        value = value.removeprefix(prefix)
    return value


def print_report(
    plan: ImportPlan, todo: Sequence[ImportedKey], config: Config, dry_run: bool, out: TextIO
) -> None:
    store = config.signing.keys
    if dry_run:
        print("Dry run: nothing is written.", file=out)
    if not plan.keys:
        print(f"No key in {plan.origin} signs one exact domain: nothing to import.", file=out)
    else:
        verb = "Would import" if dry_run else "Imported"
        print(f"{verb} from {plan.origin} into {store}:", file=out)
    for key in plan.keys:
        done = "" if key in todo else " (already in the store)"
        print(f"  {_key_line(key)}{done}", file=out)
    notes = [*plan.notes, *_missing_key_notes(plan, config)]
    if notes:
        print("Notes:", file=out)
        for note in notes:
            print(f"  {note}", file=out)
    if plan.keys:
        _print_toml(plan, config, out)
        _print_next_steps(plan, config, dry_run, out)


def _key_line(key: ImportedKey) -> str:
    size = f", {key.bits} bits" if key.bits else ""
    return f"{key.domain} selector {key.selector} ({key.algorithm.value}{size}) ← {key.source}"


def signing_lines(plan: ImportPlan, config: Config) -> tuple[TomlSetting, TomlSetting]:
    """[signing] domains and algorithms: what is configured already, then what the import adds."""
    found = [k.domain for k in plan.keys]
    domains = tuple(dict.fromkeys([*config.signing.domains, *found]))
    wanted = [*config.signing.algorithms, *(k.algorithm for k in plan.keys)]
    algorithms = tuple(a.value for a in Algorithm if a in wanted)
    return (
        TomlSetting("signing", "domains", domains),
        TomlSetting("signing", "algorithms", algorithms),
    )


def _missing_key_notes(plan: ImportPlan, config: Config) -> list[str]:
    _, algorithms = signing_lines(plan, config)
    have = {(k.domain, k.algorithm.value) for k in plan.keys}
    have |= {(s.key.domain, s.key.algorithm.value) for s in read_store(config.signing.keys).keys}
    return [
        f"{domain} has no {algorithm} key: reputable logs key_missing for it until "
        f"`reputable keys new {domain}{' --algorithm ed25519' if 'ed25519' in algorithm else ''}`"
        for domain in dict.fromkeys(k.domain for k in plan.keys)
        for algorithm in algorithms.value
        if (domain, algorithm) not in have
    ]


def _print_toml(plan: ImportPlan, config: Config, out: TextIO) -> None:
    target = config.source if config.source.startswith("/") else "/etc/reputable/reputable.toml"
    print(f"Put these lines in {target}:", file=out)
    sections: dict[str, list[TomlSetting]] = {"signing": list(signing_lines(plan, config))}
    for setting in plan.settings:
        sections.setdefault(setting.section, []).append(setting)
    for section, settings in sections.items():
        print(f"  [{section}]", file=out)
        for setting in settings:
            print(f"  {setting.line}", file=out)


def _print_next_steps(plan: ImportPlan, config: Config, dry_run: bool, out: TextIO) -> None:
    carried = [s.value for s in plan.settings if (s.section, s.key) == ("milter", "socket")]
    old = plan.software
    stop = f"systemctl disable --now {'opendkim' if old is Software.OPENDKIM else 'dkimpy-milter'}"
    if carried:
        switch = (
            f"reputable listens where {old} did ([milter] socket above), so Postfix's "
            f"smtpd_milters stays as it is: stop {old} ({stop}), then start reputable."
        )
    else:
        switch = (
            f"Stop {old} ({stop}), start reputable, and point Postfix's smtpd_milters (and "
            f"non_smtpd_milters) at reputable instead of {old}: "
            f"{config.milter.socket.postfix}; then `postfix reload`."
        )
    steps = [
        *(["Run the import again without --dry-run."] if dry_run else []),
        "DNS stays as it is: the same keys sign under the same selectors "
        f"(`reputable keys dns {plan.keys[0].domain}` shows the records to compare).",
        switch,
        "Send a test message and check that its signature verifies; the import only read "
        f"{old}'s files: keep them until then.",
    ]
    print("Next steps:", file=out)
    for number, step in enumerate(steps, 1):
        print(f"  {number}. {step}", file=out)
