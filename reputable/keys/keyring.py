"""The keyring: which keys sign mail of which domain, chosen from the key store. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reputable.config import is_mail_domain
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
            newest = newest_active(stored, domain, algorithm)
            if newest is not None:
                chosen.append(newest.key)
        if chosen:
            by_domain[domain] = tuple(chosen)
    return Keyring(by_domain)


def newest_active(
    stored: Sequence[StoredKey], domain: str, algorithm: Algorithm
) -> StoredKey | None:
    """The key that signs the domain's mail with the algorithm: the newest active one."""
    candidates = [
        s
        for s in stored
        if s.key.domain == domain
        and s.key.algorithm is algorithm
        and s.meta.state is KeyState.ACTIVE
    ]
    return max(candidates, key=lambda s: (s.meta.changed, s.key.selector), default=None)


def missing_algorithms(
    keyring: Keyring, domains: Sequence[str], algorithms: Sequence[Algorithm]
) -> list[tuple[str, Algorithm]]:
    """(domain, algorithm) pairs configured to sign but without an active key: start-up warnings."""
    missing: list[tuple[str, Algorithm]] = []
    for domain in domains:
        present = {k.algorithm for k in keyring.keys_for(domain)}
        missing.extend((domain, a) for a in algorithms if a not in present)
    return missing


@dataclass(frozen=True, slots=True)
class NotSigning:
    """Why an active key would not sign, and the `[signing]` line that would make it ("" if none)."""

    reason: str
    setting: str


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def not_signing(
    domain: str, algorithm: Algorithm, domains: Sequence[str], algorithms: Sequence[Algorithm]
) -> list[NotSigning]:
    """Empty when an active key of this domain and algorithm signs (as `build_keyring` chooses)."""
    if not is_mail_domain(domain):
        return [NotSigning(f"{domain} is not a mail domain: nothing is signed for it", "")]
    found: list[NotSigning] = []
    if domain not in domains:
        found.append(
            NotSigning(
                f"{domain} is not in [signing] domains",
                "domains = " + _toml_list([*domains, domain]),
            )
        )
    if algorithm not in algorithms:
        names = [a.value for a in (*algorithms, algorithm)]
        found.append(
            NotSigning(
                f"{algorithm.value} is not in [signing] algorithms",
                "algorithms = " + _toml_list(names),
            )
        )
    return found
