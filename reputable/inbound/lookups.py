"""The DNS answers inbound verification needs, each cached for its TTL. I/O.

Key records at selector._domainkey.domain, SPF of the client for its
sender, and (shared with the reputation gate) DMARC policies and
organizational domains. Every lookup is bounded by [dns] timeout and goes
through reputable's resolver; in the milter's event loop a cache miss raises
`WouldBlock` (see `reputable.reputation.TtlCache`), and the end of headers is
run again on a worker where the lookup may wait.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dns.exception
import dns.rdatatype

from reputable.checks.dmarc import DmarcLookup
from reputable.checks.spf import SpfEvaluation, query_spf
from reputable.reputation import Reputation, TtlCache
from reputable.resolver import NoTimeLeft, failure_reason, resolve_by

RETRY_TTL_S = 60  # how long a failed key lookup is believed before asking again
NO_RECORD_TTL_S = 300  # when a negative answer carried no TTL


@dataclass(frozen=True, slots=True)
class KeyAnswer:
    """The TXT records at a key's name (each joined), or why they could not be fetched."""

    records: tuple[str, ...]
    error: str = ""  # set: a temporary failure (timeout, SERVFAIL), records is empty


class InboundLookups:
    """Key, SPF, DMARC and organizational-domain lookups for received mail, cached by TTL."""

    def __init__(self, reputation: Reputation) -> None:
        self.reputation = reputation
        self.keys: TtlCache[tuple[str, str], KeyAnswer] = TtlCache(domain_of=lambda key: key[1])
        self.spf_cache: TtlCache[tuple[str, str, str], SpfEvaluation] = TtlCache(
            domain_of=lambda key: key[1].rpartition("@")[2]
        )

    @property
    def authserv_id(self) -> str:
        """The Authentication-Results authserv-id: [inbound] authserv_id, else this host's name."""
        engine = self.reputation
        return engine.config.inbound.authserv_id or engine.identity.helo

    @property
    def timeout_s(self) -> float:
        return self.reputation.config.dns.timeout_s

    def key(self, selector: str, domain: str) -> KeyAnswer:
        name = f"{selector}._domainkey.{domain}".lower()
        return self.keys.get_or_load((selector.lower(), domain.lower()), lambda: self._key(name))

    def _key(self, name: str) -> tuple[KeyAnswer, int]:
        try:
            answer = resolve_by(
                self.reputation.resolver, name, "TXT", time.monotonic() + self.timeout_s
            )
        except (dns.exception.DNSException, NoTimeLeft, ValueError) as exc:
            return KeyAnswer(
                (), failure_reason(exc, self.timeout_s) or "lookup failed"
            ), RETRY_TTL_S
        if answer is None or answer.rrset is None:
            return KeyAnswer(()), NO_RECORD_TTL_S
        records = tuple(
            b"".join(rdata.strings).decode("utf-8", "replace")
            for rdata in answer.rrset
            if rdata.rdtype == dns.rdatatype.TXT
        )
        return KeyAnswer(records), answer.rrset.ttl

    def spf(self, ip: str, sender: str, helo: str) -> SpfEvaluation:
        """check_host() for the client `ip`: `sender` is MAIL FROM, or postmaster@HELO for <>."""
        domain = sender.rpartition("@")[2]

        def load() -> tuple[SpfEvaluation, int]:
            evaluation = query_spf(
                ip, domain, helo, self.reputation.resolver, self.timeout_s, sender=sender
            )
            return evaluation, evaluation.ttl_s

        return self.spf_cache.get_or_load((ip, sender.lower(), helo.lower()), load)

    def dmarc(self, from_domain: str) -> DmarcLookup:
        return self.reputation.dmarc(from_domain)

    def org_domain(self, domain: str) -> str:
        return self.reputation.org_domain(domain)
