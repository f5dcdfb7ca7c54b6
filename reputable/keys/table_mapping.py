"""The keys a SigningTable's rules reach in the KeyTables, and a note for the rest. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reputable.config import parse_domain
from reputable.errors import Problem
from reputable.keys.opendkim_tables import (
    KeyEntry,
    KeyTable,
    PatternScope,
    Scope,
    SigningRule,
    SigningTable,
    pattern_scope,
)


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
