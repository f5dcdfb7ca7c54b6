"""The keyring: which keys sign mail of which domain, chosen from the key store. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reputable.keys.metadata import KeyState
from reputable.keys.store import StoredKey
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey


@dataclass(frozen=True, slots=True)
class Keyring:
    by_domain: Mapping[str, tuple[SigningKey, ...]] = field(default_factory=dict)

    def keys_for(self, domain: str) -> tuple[SigningKey, ...]:
        return self.by_domain.get(domain, ())


def build_keyring(
    stored: Sequence[StoredKey], domains: Sequence[str], algorithms: Sequence[Algorithm]
) -> Keyring:
    """For each signing domain, one active key per configured algorithm (the newest active one).

    Pending and retired keys never sign; a domain with no usable key is
    absent, so its mail passes unsigned with reason `no_key`.
    """
    by_domain: dict[str, tuple[SigningKey, ...]] = {}
    for domain in domains:
        chosen: list[SigningKey] = []
        for algorithm in algorithms:
            candidates = [
                s
                for s in stored
                if s.key.domain == domain
                and s.key.algorithm is algorithm
                and s.meta.state is KeyState.ACTIVE
            ]
            if candidates:
                newest = max(candidates, key=lambda s: (s.meta.changed, s.key.selector))
                chosen.append(newest.key)
        if chosen:
            by_domain[domain] = tuple(chosen)
    return Keyring(by_domain)


def missing_algorithms(
    keyring: Keyring, domains: Sequence[str], algorithms: Sequence[Algorithm]
) -> list[tuple[str, Algorithm]]:
    """(domain, algorithm) pairs configured to sign but without an active key: start-up warnings."""
    missing: list[tuple[str, Algorithm]] = []
    for domain in domains:
        present = {k.algorithm for k in keyring.keys_for(domain)}
        missing.extend((domain, a) for a in algorithms if a not in present)
    return missing
