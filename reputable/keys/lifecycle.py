"""Key rotation planning: every state change and refusal, as a function of (now, keys, policy). Pure.

States run pending → active → retiring → retired. A pending key becomes
active only on proof that its DNS record carries exactly its public key; the
key it replaces (same domain and algorithm) then stops signing and becomes
retiring, keeping its record for the grace period so that queued and
in-flight mail still verifies; after that, `keys list` says the record may
go and `keys retire` ends it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from reputable.keys.dnscheck import DnsStatus, RecordCheck
from reputable.keys.keyring import NotSigning
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.store import StoredKey
from reputable.signing.algorithm import Algorithm

MIN_GOOD_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class Policy:
    grace: timedelta = timedelta(days=7)
    max_age: timedelta = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Change:
    """New metadata for one stored key."""

    key: StoredKey
    meta: KeyMetadata


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a step is not taken, said so the admin knows what to do."""

    reason: str


def selector_for(
    now: datetime, algorithm: Algorithm, scheme: str, host: str, taken: Collection[str]
) -> str:
    """The new key's selector: "s"/"e" + the scheme, with "-2", "-3"… when taken (two rotations a day)."""
    prefix = "e" if algorithm is Algorithm.ED25519_SHA256 else "s"
    base = (prefix + now.strftime(scheme.replace("{host}", host))).lower()
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def plan_rotation(keys: Sequence[StoredKey], domain: str, algorithm: Algorithm) -> Refusal | None:
    """None if a new pending key may be created; a rotation already waiting for DNS is refused."""
    for stored in keys:
        if same_slot(stored, domain, algorithm) and stored.meta.state is KeyState.PENDING:
            return Refusal(
                f"{domain} already has a pending {algorithm.value} key, {stored.key.selector}: publish its "
                f"record and run `reputable keys activate {domain}`, or drop it with "
                f"`reputable keys retire {domain} {stored.key.selector}`"
            )
    return None


def rotate_hint(domain: str, algorithm: Algorithm) -> str:
    """The command that replaces a domain's key of this algorithm."""
    option = " --algorithm ed25519" if algorithm is Algorithm.ED25519_SHA256 else ""
    return f"reputable keys rotate {domain}{option}"


def same_slot(stored: StoredKey, domain: str, algorithm: Algorithm) -> bool:
    return stored.key.domain == domain and stored.key.algorithm is algorithm


def plan_activation(
    target: StoredKey, keys: Sequence[StoredKey], check: RecordCheck, now: datetime
) -> list[Change] | Refusal:
    """Activate a pending key whose record matches; the key(s) it replaces become retiring.

    The target's change comes first: applied in order, a crash between the
    writes leaves two active keys of which the newer (proven) one signs.
    """
    if target.meta.state is not KeyState.PENDING:
        return Refusal(f"{describe(target)} is {target.meta.state.value}, not pending")
    if check.status is DnsStatus.ERROR:
        return Refusal(f"{describe(target)} stays pending: {unchecked_step(check)}")
    if check.status is not DnsStatus.MATCHING:
        return Refusal(
            f"{describe(target)} stays pending: its DNS record is {check.status.value}: {check.detail}"
        )
    changes = [Change(target, target.meta.entering(KeyState.ACTIVE, now))]
    for stored in keys:
        replaced = stored.meta.state is KeyState.ACTIVE and stored.path != target.path
        if replaced and same_slot(stored, target.key.domain, target.key.algorithm):
            changes.append(Change(stored, stored.meta.entering(KeyState.RETIRING, now)))
    return changes


def plan_repairs(keys: Sequence[StoredKey], now: datetime) -> list[Change]:
    """Finish an activation cut short (a crash between its writes): one active key per slot.

    Of several active keys of one domain and algorithm, the newest (the last
    activated) signs; the others become retiring, as the activation meant.
    """
    changes: list[Change] = []
    slots: dict[tuple[str, Algorithm], list[StoredKey]] = {}
    for stored in keys:
        if stored.meta.state is KeyState.ACTIVE:
            slots.setdefault((stored.key.domain, stored.key.algorithm), []).append(stored)
    for active in slots.values():
        newest = max(active, key=lambda k: (k.meta.changed, k.key.selector))
        changes.extend(
            Change(k, k.meta.entering(KeyState.RETIRING, now)) for k in active if k is not newest
        )
    return changes


def grace_ends(stored: StoredKey, policy: Policy) -> datetime | None:
    since = stored.meta.retiring
    return since + policy.grace if since is not None else None


def plan_retirement(
    target: StoredKey, keys: Sequence[StoredKey], now: datetime, policy: Policy, *, force: bool
) -> Change | Refusal:
    """End a key: a retiring one after its grace period, a pending one any time (never published)."""
    state = target.meta.state
    if state is KeyState.RETIRED:
        return Refusal(f"{describe(target)} is retired already")
    if state is KeyState.ACTIVE:
        others = [
            k
            for k in keys
            if same_slot(k, target.key.domain, target.key.algorithm)
            and k.meta.state is KeyState.ACTIVE
        ]
        if len(others) < 2 and not force:
            return Refusal(
                f"{describe(target)} is the key that signs {target.key.domain} mail: rotate first "
                f"(`{rotate_hint(target.key.domain, target.key.algorithm)}`), "
                "or use --force to stop signing with it"
            )
    ends = grace_ends(target, policy)
    if state is KeyState.RETIRING and ends is not None and now < ends and not force:
        return Refusal(
            f"{describe(target)} is in its grace period until {ends:%Y-%m-%d %H:%M} UTC: mail signed with it "
            "may still be in queues; retire it then, or use --force"
        )
    return Change(target, target.meta.entering(KeyState.RETIRED, now))


def next_step(
    stored: StoredKey,
    check: RecordCheck,
    now: datetime,
    policy: Policy,
    unsigned: Sequence[NotSigning] = (),
) -> str:
    """What the admin should do next about this key (the `keys list` column).

    `unsigned`: why the key would not sign if active (`keyring.not_signing`).
    """
    state = stored.meta.state
    domain, selector = stored.key.domain, stored.key.selector
    if state is KeyState.PENDING:
        if check.status is DnsStatus.MATCHING:
            return f"record published: activates at the milter's next check, or run `reputable keys activate {domain}`"
        if check.status is DnsStatus.MISMATCH:
            return f"the published record is not this key: fix it ({check.detail})"
        if check.status is DnsStatus.NOT_CHECKED:
            return f"publish its record (`reputable keys dns {domain}`), then `reputable keys activate {domain}`"
        if check.status is DnsStatus.ERROR:
            return f"{unchecked_step(check)}; then `reputable keys activate {domain}`"
        return f"publish its record (`reputable keys dns {domain}`); it activates once the record is seen"
    if state is KeyState.ACTIVE:
        if unsigned:
            return "not signing: " + "; ".join(
                n.reason + (f" (to sign with it, set {n.setting})" if n.setting else "")
                for n in unsigned
            )
        if now - stored.meta.created > policy.max_age:
            return f"older than the maximum age: `{rotate_hint(domain, stored.key.algorithm)}`"
        return "signing"
    if state is KeyState.RETIRING:
        ends = grace_ends(stored, policy)
        if ends is not None and now < ends:
            return (
                f"keep its record until {ends:%Y-%m-%d %H:%M} UTC (queued mail may still carry it)"
            )
        return f"its record may be removed now; then `reputable keys retire {domain} {selector}`"
    if stored.meta.revoked:
        return "none: its record is revoked (empty p=); remove it whenever you like"
    return "none: remove its DNS record if it is still published"


def warnings(
    stored: StoredKey,
    check: RecordCheck,
    now: datetime,
    policy: Policy,
    unsigned: Sequence[NotSigning] = (),
) -> list[str]:
    found: list[str] = []
    if stored.key.algorithm is Algorithm.RSA_SHA256 and stored.meta.bits < MIN_GOOD_RSA_BITS:
        found.append(
            f"RSA key of {stored.meta.bits} bits: receivers may ignore it; rotate to 2048 bits"
        )
    if check.testing:
        found.append(
            "the record is in testing mode (t=y): receivers may ignore failures; remove t=y"
        )
    in_use = stored.meta.state in (KeyState.PENDING, KeyState.ACTIVE)
    if in_use and now - stored.meta.created > policy.max_age:
        age = (now - stored.meta.created).days
        found.append(
            f"the key is {age} days old, more than the maximum of {policy.max_age.days}: rotate it"
        )
    signing = stored.meta.state is KeyState.ACTIVE and not unsigned
    if signing and check.status is DnsStatus.MISMATCH:
        found.append(
            f"signing, but its record shows another key: every signature fails ({check.detail})"
        )
    if signing and check.status is DnsStatus.MISSING:
        found.append("signing, but its record is missing: every signature fails")
    if signing and check.status is DnsStatus.ERROR:
        found.append(f"signing, but its record could not be checked: {unchecked_step(check)}")
    return found


def unchecked_step(check: RecordCheck) -> str:
    """Why a record could not be checked (DnsStatus.ERROR), and where to look: never "publish it"."""
    if not check.servers_found:
        return (
            f"could not find the domain's name servers ({check.detail}): check [dns] "
            "nameservers or the network, or list them in [keys] verify_nameservers"
        )
    return (
        f"could not reach the domain's name servers ({check.detail}): check [keys] "
        "verify_nameservers or the network"
    )


def describe(stored: StoredKey) -> str:
    return f"{stored.key.domain} {stored.key.selector} ({stored.key.algorithm.value})"


def activation_candidates(keys: Sequence[StoredKey], domain: str | None) -> list[StoredKey]:
    return [k for k in keys if k.meta.state is KeyState.PENDING and domain in (None, k.key.domain)]
