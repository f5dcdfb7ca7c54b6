"""Records a test sets on the shared DNS server, remembered so that `undo` removes them all."""

from __future__ import annotations

import secrets

import dns.name

from tests.integration.harness.dnsserver import DnsServer, NameLike, reverse_name

LOOKUP_TIMEOUT_S = 1.0  # the bound of each lookup of the `resolver` fixture (conftest.py)


class ScratchRecords:
    """Sets records, drops and rcodes on the shared server; `undo` takes every one back.

    `name(label)` gives a name under a suffix fresh for each instance, so tests
    that share the server never see each other's records.
    """

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.base = f"t{secrets.token_hex(4)}.rc.test"
        self.names: set[dns.name.Name] = set()

    def name(self, label: str) -> str:
        return f"{label}.{self.base}"

    def own(self, name: NameLike) -> NameLike:
        """Remember `name` for `undo` (for records set on the server directly)."""
        self.names.add(name if isinstance(name, dns.name.Name) else dns.name.from_text(name))
        return name

    def ptr(self, ip: str, *targets: str, ttl: int | None = None) -> None:
        self.own(reverse_name(ip))
        self.server.set_ptr(ip, *targets, ttl=ttl)

    def a(self, name: str, *addresses: str, ttl: int | None = None) -> None:
        self.server.set_a(self.own(name), *addresses, ttl=ttl)

    def aaaa(self, name: str, *addresses: str) -> None:
        self.server.set_aaaa(self.own(name), *addresses)

    def txt(self, name: str, *records: str) -> None:
        """One TXT record per argument (each a single string)."""
        self.server.remove(self.own(name), "TXT")
        for record in records:
            self.server.add_txt(name, record)

    def mx(self, name: str, *exchanges: tuple[int, str]) -> None:
        self.server.set_mx(self.own(name), *exchanges)

    def drop(self, name: NameLike) -> None:
        self.server.set_drop(self.own(name))

    def rcode(self, name: str, rcode: str) -> None:
        self.server.set_rcode(self.own(name), rcode)

    def undo(self) -> None:
        for name in self.names:
            self.server.set_drop(name, False)
            self.server.set_rcode(name, None)
            self.server.remove(name)
