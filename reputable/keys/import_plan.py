"""The import plan: made from an OpenDKIM or dkimpy-milter set-up, carried out on the store. I/O.

`plan_opendkim`, `plan_dkimpy_milter` and `plan_tables` only read (the
configuration, its tables, the keys); `perform_import` writes the key store.
The source files are never written to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reputable.errors import ConfigError, Problem
from reputable.keys import active_names
from reputable.keys.import_settings import Expand, TomlSetting, map_settings
from reputable.keys.locking import store_lock
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.opendkim_tables import (
    ConfLine,
    DatasetKind,
    KeyTable,
    Scope,
    SigningTable,
    Software,
    conf_lines,
    dataset_items,
    dataset_kind,
    list_items,
    parse_key_table,
    parse_signing_table,
    pattern_scope,
)
from reputable.keys.private_keys import read_private_key, same_key
from reputable.keys.store import (
    PrivateKey,
    StoredKey,
    algorithm_of,
    bits_of,
    key_path,
    write_key,
)
from reputable.keys.table_mapping import KeyRef, TableMapping, map_tables
from reputable.regular_file import UnreadableFile, read_regular_file
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey

MAX_INCLUDE_DEPTH = 5  # opendkim.conf(5): Include nests at most five levels
_EXPORT_HINT = (
    "export it to a flat file and run: reputable keys import --key-table FILE --signing-table FILE"
)


@dataclass(frozen=True, slots=True)
class ImportedKey:
    domain: str  # A-label, lower case
    selector: str
    source: Path  # where the private key was read
    algorithm: Algorithm
    bits: int = 0


@dataclass(frozen=True, slots=True)
class ImportPlan:
    keys: tuple[ImportedKey, ...]
    notes: tuple[str, ...]  # every source line not mapped as it is, and why
    settings: tuple[TomlSetting, ...] = ()
    origin: str = ""  # the file the plan was made from
    software: Software = Software.OPENDKIM


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
        return read_regular_file(path).data.decode("utf-8", errors="replace")
    except UnreadableFile as exc:
        raise ConfigError([Problem(str(path), what, "unreadable", exc.reason)]) from None


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
            data = read_regular_file(path).data
        except UnreadableFile as exc:
            return (), f"could not read {path} ({exc.reason})"
        return dataset_items(data.decode("utf-8", errors="replace")), ""

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
    elif not same_key(earlier[1], private_key):
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
            same = same_key(read_private_key(pem), read_private_key(key.source))
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
            written = [_write(key, store, now) for key in keys_to_write(plan, store)]
            active_names.refresh(store, {k.key.domain for k in written})
            return written
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
