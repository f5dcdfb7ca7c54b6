"""The annotated example configuration: its comments and keys, held to tomllib and the schema. Pure.

conf/reputable.toml documents every key in the comment above it; this module
reads those comments back (a small parser for the subset of TOML the file
uses) and checks that it read what tomllib reads and what `reputable.config`
knows, so that reputable.toml(5) shows neither a key too many nor one too few.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby

from reputable.manpages.roff import Block, Literal
from reputable.manpages.sources import ManpageError

EXAMPLE = "conf/reputable.toml"


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    value: str  # the default as written, over several lines for a long list
    description: tuple[Block, ...]  # empty when grouped
    grouped: bool  # without a comment of its own, right below another key: described with it
    line: int


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    description: tuple[Block, ...]
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class Annotated:
    preamble: tuple[Block, ...]
    sections: tuple[Section, ...]


def read_annotated(text: str, schema: Mapping[str, Collection[str]]) -> Annotated:
    """The example file parsed, checked against tomllib and against the loader's schema."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManpageError(f"{EXAMPLE}: {exc}") from None
    annotated = parse_annotated(text)
    check_values(annotated, document)
    check_schema(annotated, schema)
    return annotated


# --- the comments and keys ---


def comment_blocks(comments: Sequence[str]) -> tuple[Block, ...]:
    """Comment text (what follows each "#") as paragraphs and examples.

    "# text" lines run together into a paragraph, a lone "#" ends one, and
    "#   text" (indented past the one space) is an example line, kept as written.
    """

    def kind(comment: str) -> str:
        if not comment.strip():
            return "break"
        return "literal" if comment.startswith("  ") else "prose"

    blocks: list[Block] = []
    for what, group in groupby(comments, kind):
        lines = list(group)
        if what == "prose":
            blocks.append(" ".join(c.strip() for c in lines))
        elif what == "literal":
            indent = min(len(c) - len(c.lstrip()) for c in lines)
            blocks.append(Literal(tuple(c[indent:].rstrip() for c in lines)))
    return tuple(blocks)


class _Reader:
    """What parse_annotated knows between lines: chiefly the comments not yet placed."""

    def __init__(self) -> None:
        self.preamble: list[Block] = []
        self.sections: list[tuple[str, list[Block], list[Key]]] = []
        self.comments: list[str] = []
        self.after_key = False

    def blank(self) -> None:
        # Comments followed by a blank line describe the section they are in (or the file).
        (self.sections[-1][1] if self.sections else self.preamble).extend(
            comment_blocks(self.comments)
        )
        self.comments, self.after_key = [], False

    def section(self, name: str, number: int) -> None:
        if any(s[0] == name for s in self.sections):
            raise ManpageError(f"line {number}: [{name}] a second time")
        self.sections.append((name, list(comment_blocks(self.comments)), []))
        self.comments, self.after_key = [], False

    def key(self, name: str, value: str, number: int) -> None:
        if not self.sections:
            raise ManpageError(f"line {number}: {name} is outside any [section]")
        section, _, keys = self.sections[-1]
        description = comment_blocks(self.comments)
        if not description and not self.after_key:
            raise ManpageError(f"line {number}: {section}.{name} has no comment to describe it")
        if any(k.name == name for k in keys):
            raise ManpageError(f"line {number}: {section}.{name} a second time")
        keys.append(Key(name, value, description, not description, number))
        self.comments, self.after_key = [], True

    def result(self) -> Annotated:
        self.blank()
        sections = (Section(n, tuple(d), tuple(k)) for n, d, k in self.sections)
        return Annotated(tuple(self.preamble), tuple(sections))


_TABLE = re.compile(r"\[([\w-]+(?:\.[\w-]+)*)\]\s*(#.*)?")
_KEY = re.compile(r"([\w-]+)\s*=\s*(.*)")


def parse_annotated(text: str) -> Annotated:
    """The sections and keys of an annotated TOML file, each with the comment above it.

    A small parser for the subset the example file uses ([table] headers, bare
    keys, one-line values and bracketed lists over several lines); anything
    else is refused with its line number rather than guessed at.
    """
    reader = _Reader()
    lines = iter(enumerate(text.splitlines(), start=1))
    for number, raw in lines:
        stripped = raw.strip()
        if not stripped:
            reader.blank()
        elif stripped.startswith("#"):
            reader.comments.append(stripped[1:])
        elif stripped.startswith("["):
            table = _TABLE.fullmatch(stripped)
            if table is None:
                raise ManpageError(f"line {number}: not a [table] header this parser reads")
            reader.section(table[1], number)
        else:
            name, value, inline = _key_value(number, stripped, lines)
            reader.comments.extend(inline)
            reader.key(name, value, number)
    return reader.result()


def has_comment(text: str) -> bool:
    """Whether one line of a value as written carries a comment (a # outside any string)."""
    return _scan(text, 0, 0)[1] is not None


def _key_value(
    number: int, stripped: str, more: Iterator[tuple[int, str]]
) -> tuple[str, str, list[str]]:
    """A key, its value as written (reading on while a bracket is open) and any inline comment."""
    match = _KEY.fullmatch(stripped)
    if match is None:
        raise ManpageError(f"line {number}: not a bare `key = value` line: {stripped!r}")
    name, rest = match[1], match[2]
    depth, comment_at = _scan(rest, 0, number)
    if depth == 0:
        inline = [] if comment_at is None else [rest[comment_at + 1 :]]
        return name, rest[:comment_at].rstrip(), inline
    written = [rest]
    for later, raw in more:
        written.append(raw.rstrip())
        depth, _ = _scan(raw, depth, later)
        if depth <= 0:
            return name, "\n".join(written), []
    raise ManpageError(f"line {number}: the value of {name} never closes its bracket")


def _scan(text: str, depth: int, number: int) -> tuple[int, int | None]:
    """The bracket depth after text, and where a comment starts in it; strings are skipped."""
    index = 0
    while index < len(text):
        char = text[index]
        if char in "\"'":
            if text.startswith(char * 3, index):
                raise ManpageError(f"line {number}: a multi-line string; this parser reads none")
            index = _string_end(text, index, number)
        elif char == "#":
            return depth, index
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        index += 1
    return depth, None


def _string_end(text: str, start: int, number: int) -> int:
    quote, index = text[start], start + 1
    while index < len(text):
        if text[index] == "\\" and quote == '"':
            index += 2
            continue
        if text[index] == quote:
            return index
        index += 1
    raise ManpageError(f"line {number}: a string that does not end on its line")


# --- held to tomllib and to the loader's schema ---


def check_values(annotated: Annotated, document: Mapping[str, object]) -> None:
    """Hold the small parser to tomllib: the same keys, each value as written read the same."""
    written = {s.name: {k.name: k.value for k in s.keys} for s in annotated.sections}
    problems: list[str] = []
    for path, table in _tables(document, "", written):
        keys = written.get(path, {})
        name = f"{path}.{{}}" if path else "{}"
        problems += [
            name.format(k) + ": tomllib reads it, this parser does not" for k in table.keys() - keys
        ]
        problems += [name.format(k) + ": tomllib does not read it" for k in keys.keys() - table]
        problems += [
            name.format(k) + f": read as {keys[k]!r}, tomllib disagrees"
            for k in keys.keys() & table.keys()
            if tomllib.loads(f"v = {keys[k]}")["v"] != table[k]
        ]
    if problems:
        raise ManpageError("; ".join(sorted(problems)))


def _tables(
    table: Mapping[str, object], path: str, sections: Collection[str]
) -> Iterator[tuple[str, dict[str, object]]]:
    """Each table tomllib read with its plain keys; a [section] (or its parent) is no plain key."""
    plain: dict[str, object] = {}
    for name, value in table.items():
        inner = f"{path}.{name}" if path else name
        if isinstance(value, dict) and any(
            s == inner or s.startswith(inner + ".") for s in sections
        ):
            yield from _tables(value, inner, sections)
        else:
            plain[name] = value
    yield path, plain


def check_schema(annotated: Annotated, schema: Mapping[str, Collection[str]]) -> None:
    """Every key the loader knows is in the example file, and no other; else name each one."""
    documented = {(s.name, k.name) for s in annotated.sections for k in s.keys}
    known = {(section, key) for section, keys in schema.items() for key in keys}
    problems = [
        f"{s}.{k}: in reputable/config.py's schema, missing from {EXAMPLE}"
        for s, k in sorted(known - documented)
    ]
    problems += [
        f"{s}.{k}: in {EXAMPLE}, unknown to reputable/config.py's schema"
        for s, k in sorted(documented - known)
    ]
    problems += [
        f"[{s.name}]: in {EXAMPLE}, unknown to reputable/config.py's schema"
        for s in annotated.sections
        if s.name not in schema and not s.keys
    ]
    if problems:
        raise ManpageError("\n".join(problems))
