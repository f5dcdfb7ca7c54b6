"""The author domain of a message, from its From header fields, parsed strictly. Pure.

RFC 5322 §3.6.2 allows one From field; DMARC (RFC 9989) is keyed on its
domain. Anything that leaves the author domain in doubt (two From fields, two
domains, syntax a receiver may read differently) is refused with a reason, so
the message is passed unsigned instead of signed for a domain an attacker
chose.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

_DOT_ATOM_DOMAIN = re.compile(
    r"^[A-Za-z0-9\-_\u0080-\U0010ffff]+(\.[A-Za-z0-9\-_\u0080-\U0010ffff]+)*$"
)
_SPECIALS = '()<>[]:;@\\,"'


class AuthorProblem(StrEnum):
    NO_FROM = "no_from"
    MULTIPLE_FROM = "multiple_from"
    FROM_UNPARSABLE = "from_unparsable"
    FROM_NO_ADDRESS = "from_no_address"
    MULTIPLE_AUTHOR_DOMAINS = "multiple_author_domains"


@dataclass(frozen=True, slots=True)
class Author:
    domain: str | None  # A-label, lower case; None when `problem` says why not
    problem: AuthorProblem | None = None


class _Unparsable(ValueError):
    pass


def author_domain(from_values: Sequence[bytes]) -> Author:
    """The single author domain named by the From field values (raw bytes after the colon)."""
    if not from_values:
        return Author(None, AuthorProblem.NO_FROM)
    if len(from_values) > 1:
        return Author(None, AuthorProblem.MULTIPLE_FROM)
    text = from_values[0].decode("utf-8", errors="surrogateescape")
    try:
        domains = {_normalise_domain(d) for d in _address_domains(text)}
    except _Unparsable:
        return Author(None, AuthorProblem.FROM_UNPARSABLE)
    if not domains:
        return Author(None, AuthorProblem.FROM_NO_ADDRESS)
    if len(domains) > 1:
        return Author(None, AuthorProblem.MULTIPLE_AUTHOR_DOMAINS)
    return Author(domains.pop())


def _tokens(text: str) -> list[str]:
    """Specials as single tokens, quoted strings whole (quotes kept), atoms; comments dropped."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            i = _skip_comment(text, i)
        elif c == '"':
            end = _end_of_quoted(text, i)
            tokens.append(text[i:end])
            i = end
        elif c == "\\":
            raise _Unparsable("backslash outside quotes")
        elif c in _SPECIALS:
            tokens.append(c)
            i += 1
        else:
            start = i
            while i < n and text[i] not in _SPECIALS and text[i] not in " \t\r\n":
                i += 1
            tokens.append(text[start:i])
    return tokens


def _skip_comment(text: str, i: int) -> int:
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _Unparsable("unclosed comment")


def _end_of_quoted(text: str, i: int) -> int:
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    raise _Unparsable("unclosed quoted string")


def _address_domains(text: str) -> list[str]:
    """The domain of every mailbox in an address list (groups included)."""
    domains: list[str] = []
    in_group = False
    for part in _split_top(_tokens(text)):
        if ":" in part:
            if in_group or part.count(":") != 1:
                raise _Unparsable("nested group")
            part = part[part.index(":") + 1 :]
            in_group = True
        if part and part[-1] == ";":
            if not in_group:
                raise _Unparsable("group end without start")
            part = part[:-1]
            in_group = False
        if part:
            domains.append(_mailbox_domain(part))
    if in_group:
        raise _Unparsable("unclosed group")
    return domains


def _split_top(tokens: list[str]) -> list[list[str]]:
    """Split at commas, and after a group's closing semicolon."""
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == ",":
            parts.append([])
        else:
            parts[-1].append(token)
            if token == ";":
                parts.append([])
    return [p for p in parts if p]


def _mailbox_domain(tokens: list[str]) -> str:
    if "<" in tokens:
        start = tokens.index("<")
        if tokens.count("<") != 1 or tokens.count(">") != 1 or tokens[-1] != ">":
            raise _Unparsable("angle brackets")
        display = tokens[:start]
        if any(t in _SPECIALS for t in display):
            raise _Unparsable("special character in display name")
        return _addr_spec_domain(tokens[start + 1 : -1])
    return _addr_spec_domain(tokens)


def _addr_spec_domain(tokens: list[str]) -> str:
    # An obsolete route ("@a,@b:user@c") is not accepted: receivers disagree on it.
    if tokens.count("@") != 1:
        raise _Unparsable("not one @")
    at = tokens.index("@")
    local, domain = tokens[:at], tokens[at + 1 :]
    if not local or len(domain) != 1:
        raise _Unparsable("empty local part or domain")
    if any(t in _SPECIALS and t != "." for t in local):
        raise _Unparsable("special character in local part")
    return domain[0]


def _normalise_domain(domain: str) -> str:
    if domain.startswith("[") or not _DOT_ATOM_DOMAIN.match(domain):
        raise _Unparsable("domain")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise _Unparsable("domain not IDNA") from None
    return ascii_domain.lower().rstrip(".")
