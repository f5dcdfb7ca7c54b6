"""Milter lists in Postfix's syntax: their entries, where each connects, and which is reputable's. Pure.

A list is separated by commas and/or white space; since Postfix 3.0 an entry
may be `{ address, name=value, ... }` with per-milter settings
(default_action, protocol, timeouts) that win over main.cf's.
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from reputable.config import MilterSocket

_SEPARATORS = frozenset(", \t\r\n")
# Other DKIM signers reputable replaces (`reputable keys import` reads their keys).
_SIGNERS = (("opendkim", "OpenDKIM"), ("dkimpy", "dkimpy-milter"))


@dataclass(frozen=True, slots=True)
class MilterEntry:
    address: str  # "unix:reputable/milter.sock", "inet:127.0.0.1:8891"
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str:
        return next((value for key, value in self.options if key == name), "")

    def __str__(self) -> str:
        if not self.options:
            return self.address
        return "{ " + ", ".join([self.address, *(f"{k}={v}" for k, v in self.options)]) + " }"

    def compact(self) -> str:
        if not self.options:
            return self.address
        return "{" + ",".join([self.address, *(f"{k}={v}" for k, v in self.options)]) + "}"

    def with_option(self, name: str, value: str) -> MilterEntry:
        kept = tuple((k, v) for k, v in self.options if k != name)
        return MilterEntry(self.address, (*kept, (name, value)))


@dataclass(frozen=True, slots=True)
class UnixEndpoint:
    path: str  # as written: a relative path is relative to queue_directory


@dataclass(frozen=True, slots=True)
class InetEndpoint:
    host: str  # without brackets
    port: int


Endpoint = UnixEndpoint | InetEndpoint


def split_items(text: str) -> list[str]:
    """A list's items; a `{ ... }` group is one item, braces included."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if depth == 0 and char in _SEPARATORS:
            if current:
                items.append("".join(current))
                current = []
            continue
        depth += (char == "{") - (char == "}")
        current.append(char)
    if current:
        items.append("".join(current))
    return items


def parse_milter_list(text: str) -> tuple[MilterEntry, ...]:
    entries: list[MilterEntry] = []
    for item in split_items(text):
        if not item.startswith("{"):
            entries.append(MilterEntry(item))
            continue
        inner = [w for w in item.strip("{}").replace(",", " ").split() if w]
        if inner:
            options = tuple(_name_value(w) for w in inner[1:])
            entries.append(MilterEntry(inner[0], options))
    return tuple(entries)


def _name_value(word: str) -> tuple[str, str]:
    name, _, value = word.partition("=")
    return name, value


def format_milter_list(entries: Iterable[MilterEntry], *, compact: bool = False) -> str:
    """Entries back into a value; compact (no white space) for postconf -P, which refuses it."""
    if compact:
        return ",".join(e.compact() for e in entries)
    return ", ".join(str(e) for e in entries)


def parse_endpoint(address: str) -> Endpoint | None:
    """Where Postfix connects for `unix:PATH` (also `local:`) or `inet:HOST:PORT`; else None."""
    transport, _, rest = address.partition(":")
    if transport in ("unix", "local") and rest:
        return UnixEndpoint(rest)
    host, _, port = rest.rpartition(":")
    if transport != "inet" or not host or not port.isdigit():
        return None
    return InetEndpoint(host.removeprefix("[").removesuffix("]"), int(port))


def postfix_address(socket: MilterSocket, queue_directory: str) -> str:
    """The milter's address as Postfix should name it.

    A unix socket under queue_directory is named relative to it: every Postfix
    daemon works in that directory, and a chrooted one sees nothing outside.
    """
    if socket.kind == "unix":
        queue = queue_directory.rstrip("/") + "/"
        path = posixpath.normpath(socket.path)
        return "unix:" + (path.removeprefix(queue) if path.startswith(queue) else path)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(socket.host, socket.host)
    return f"inet:[{host}]:{socket.port}" if ":" in host else f"inet:{host}:{socket.port}"


def seen_path(path: str, queue_directory: str, chrooted: bool) -> str:
    """The file a Postfix daemon opens for a unix milter path.

    Relative: under queue_directory, its working directory. Absolute: as is,
    unless the daemon is chrooted (master.cf), which puts it under queue_directory too.
    """
    if not path.startswith("/"):
        return posixpath.normpath(posixpath.join(queue_directory, path))
    if chrooted:
        return posixpath.normpath(queue_directory.rstrip("/") + path)
    return posixpath.normpath(path)


def names_socket(address: str, socket: MilterSocket, queue_directory: str) -> bool:
    """Whether a list entry's address is the socket reputable listens on."""
    endpoint = parse_endpoint(address)
    if isinstance(endpoint, UnixEndpoint):
        seen = seen_path(endpoint.path, queue_directory, chrooted=False)
        return socket.kind == "unix" and seen == posixpath.normpath(socket.path)
    if isinstance(endpoint, InetEndpoint) and socket.kind != "unix":
        return endpoint.port == socket.port and same_host(endpoint.host, socket.host)
    return False


def same_host(connects_to: str, listens_on: str) -> bool:
    """Whether connecting to one host reaches a listener on the other (localhost, wildcards)."""
    a, b = _host_key(connects_to), _host_key(listens_on)
    if a == b:
        return True
    if "localhost" in (a, b):
        return {a, b} <= {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}
    return (a, b) in {("127.0.0.1", "0.0.0.0"), ("::1", "::")}


def _host_key(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.lower()
    return ip.compressed


def known_signer(address: str) -> str:
    """The name of another DKIM signer a milter address belongs to, or ""."""
    return next((name for word, name in _SIGNERS if word in address.lower()), "")
