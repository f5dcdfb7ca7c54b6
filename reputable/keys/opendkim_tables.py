"""OpenDKIM's configuration formats (dkimpy-milter reads them too) and what they mean. Pure.

`parse_conf` reads opendkim.conf or dkimpy-milter.conf, `dataset_kind` tells
what a data set value names, `parse_key_table` and `parse_signing_table` read
the tables (every bad line a Problem), and `pattern_scope` says which one
domain a SigningTable pattern selects and what else it covers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from reputable.config import parse_domain
from reputable.errors import Problem
from reputable.keys.selector import is_valid_selector

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


class Software(StrEnum):
    """The milter whose configuration is imported: both read these formats."""

    OPENDKIM = "OpenDKIM"
    DKIMPY_MILTER = "dkimpy-milter"


# --- opendkim.conf / dkimpy-milter.conf ---


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


# --- KeyTable and SigningTable ---


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
        return (
            "expected a selector (letters, digits, '-' and '.', not beginning with 'active-') "
            "between the two ':'"
        )
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


# --- SigningTable patterns ---


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
