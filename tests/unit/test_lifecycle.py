"""The rotation planner as a pure function of (now, keys, policy): every transition and refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.keys.dnscheck import DnsStatus, RecordCheck
from reputable.keys.lifecycle import (
    Change,
    Policy,
    Refusal,
    activation_candidates,
    next_step,
    plan_activation,
    plan_repairs,
    plan_retirement,
    plan_rotation,
    selector_for,
    warnings,
)
from reputable.keys.metadata import KeyMetadata, KeyState
from reputable.keys.store import StoredKey
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
ED_KEY = ed25519.Ed25519PrivateKey.generate()
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(grace=timedelta(days=7), max_age=timedelta(days=180))
MATCHING = RecordCheck(DnsStatus.MATCHING, "ns1 has it")
MISSING = RecordCheck(DnsStatus.MISSING, "no record at s2._domainkey.example.com")
MISMATCH = RecordCheck(DnsStatus.MISMATCH, "ns1 has another key")
ERROR = RecordCheck(DnsStatus.ERROR, "ns1 timed out")
UNCHECKED = RecordCheck(DnsStatus.NOT_CHECKED, "not checked")


def key(
    selector: str,
    state: KeyState,
    *,
    domain: str = "example.com",
    algorithm: Algorithm = Algorithm.RSA_SHA256,
    created: datetime = T0,
    bits: int = 2048,
    retiring: datetime | None = None,
) -> StoredKey:
    private = ED_KEY if algorithm is Algorithm.ED25519_SHA256 else RSA_KEY
    meta = KeyMetadata(algorithm, bits, created, state, created, retiring=retiring)
    return StoredKey(
        SigningKey(domain, selector, algorithm, private), meta, Path(f"/k/{domain}/{selector}.pem")
    )


OLD = key("s1", KeyState.ACTIVE)
NEW = key("s2", KeyState.PENDING, created=T0 + timedelta(days=30))
ED_OLD = key("e1", KeyState.ACTIVE, algorithm=Algorithm.ED25519_SHA256)
OTHER_DOMAIN = key("s1", KeyState.ACTIVE, domain="example.net")


def test_selector_scheme_and_uniqueness() -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    assert selector_for(now, Algorithm.RSA_SHA256, "%Y-%m", "mail1", set()) == "s2026-11"
    assert selector_for(now, Algorithm.ED25519_SHA256, "%Y-%m", "mail1", set()) == "e2026-11"
    assert (
        selector_for(now, Algorithm.RSA_SHA256, "{host}-%Y%m%d", "Mail1", set())
        == "smail1-20261127"
    )
    taken = {"s2026-11", "s2026-11-2"}
    assert selector_for(now, Algorithm.RSA_SHA256, "%Y-%m", "h", taken) == "s2026-11-3"


def test_rotation_allowed_unless_one_is_pending() -> None:
    assert plan_rotation([OLD], "example.com", Algorithm.RSA_SHA256) is None
    refusal = plan_rotation([OLD, NEW], "example.com", Algorithm.RSA_SHA256)
    assert isinstance(refusal, Refusal)
    assert "already has a pending" in refusal.reason and "s2" in refusal.reason
    assert plan_rotation([OLD, NEW], "example.com", Algorithm.ED25519_SHA256) is None
    assert plan_rotation([OLD, NEW], "example.net", Algorithm.RSA_SHA256) is None


def test_activation_on_proof_retires_only_the_same_slot() -> None:
    now = T0 + timedelta(days=31)
    plan = plan_activation(NEW, [OLD, NEW, ED_OLD, OTHER_DOMAIN], MATCHING, now)
    assert isinstance(plan, list)
    assert [(c.key.key.selector, c.meta.state) for c in plan] == [
        ("s2", KeyState.ACTIVE),
        ("s1", KeyState.RETIRING),
    ]
    assert plan[0].meta.activated == now
    assert plan[1].meta.retiring == now
    assert plan[1].meta.activated is None  # history kept as it was


@pytest.mark.parametrize("check", [MISSING, MISMATCH, ERROR, UNCHECKED])
def test_no_activation_without_proof(check: RecordCheck) -> None:
    plan = plan_activation(NEW, [OLD, NEW], check, T0)
    assert isinstance(plan, Refusal)
    assert check.status.value in plan.reason
    assert check.detail in plan.reason


@pytest.mark.parametrize("state", [KeyState.ACTIVE, KeyState.RETIRING, KeyState.RETIRED])
def test_only_pending_keys_activate(state: KeyState) -> None:
    assert isinstance(plan_activation(key("s3", state), [], MATCHING, T0), Refusal)


def test_first_key_activates_with_nothing_to_retire() -> None:
    plan = plan_activation(NEW, [NEW], MATCHING, T0)
    assert isinstance(plan, list)
    assert len(plan) == 1


def test_retirement_waits_for_the_grace_period() -> None:
    retiring = key("s1", KeyState.RETIRING, retiring=T0)
    early = plan_retirement(retiring, [retiring], T0 + timedelta(days=6), POLICY, force=False)
    assert isinstance(early, Refusal)
    assert "grace period until 2026-11-08 12:00" in early.reason
    forced = plan_retirement(retiring, [retiring], T0 + timedelta(days=6), POLICY, force=True)
    assert isinstance(forced, Change)
    done = plan_retirement(retiring, [retiring], T0 + timedelta(days=7), POLICY, force=False)
    assert isinstance(done, Change)
    assert done.meta.state is KeyState.RETIRED
    assert done.meta.retired == T0 + timedelta(days=7)


def test_the_signing_key_is_not_retired_by_accident() -> None:
    refusal = plan_retirement(OLD, [OLD], T0, POLICY, force=False)
    assert isinstance(refusal, Refusal)
    assert "rotate first" in refusal.reason
    assert isinstance(plan_retirement(OLD, [OLD], T0, POLICY, force=True), Change)


def test_abandoned_pending_key_and_retired_key() -> None:
    assert isinstance(plan_retirement(NEW, [OLD, NEW], T0, POLICY, force=False), Change)
    gone = key("s0", KeyState.RETIRED)
    assert isinstance(plan_retirement(gone, [gone], T0, POLICY, force=False), Refusal)


def test_next_steps() -> None:
    now = T0 + timedelta(days=1)
    assert "publish its record" in next_step(NEW, MISSING, now, POLICY)
    assert "activates at the milter's next check" in next_step(NEW, MATCHING, now, POLICY)
    assert "not this key" in next_step(NEW, MISMATCH, now, POLICY)
    assert next_step(OLD, MATCHING, now, POLICY) == "signing"
    assert "rotate" in next_step(OLD, MATCHING, T0 + timedelta(days=181), POLICY)
    retiring = key("s1", KeyState.RETIRING, retiring=T0)
    assert "keep its record until 2026-11-08" in next_step(retiring, MATCHING, now, POLICY)
    assert "may be removed now" in next_step(retiring, MATCHING, T0 + timedelta(days=8), POLICY)
    assert "remove its DNS record" in next_step(key("s0", KeyState.RETIRED), UNCHECKED, now, POLICY)


def test_warnings() -> None:
    weak = key("s1", KeyState.ACTIVE, bits=1024)
    testing = RecordCheck(DnsStatus.MATCHING, "ok", testing=True)
    found = warnings(weak, testing, T0 + timedelta(days=200), POLICY)
    assert any("1024 bits" in w for w in found)
    assert any("t=y" in w for w in found)
    assert any("200 days old" in w for w in found)
    assert any("every signature fails" in w for w in warnings(OLD, MISMATCH, T0, POLICY))
    assert any("missing" in w for w in warnings(OLD, MISSING, T0, POLICY))
    assert warnings(OLD, MATCHING, T0, POLICY) == []
    assert warnings(ED_OLD, MATCHING, T0, POLICY) == []


def test_activation_candidates() -> None:
    other_pending = key("s9", KeyState.PENDING, domain="example.net")
    keys = [OLD, NEW, other_pending]
    assert activation_candidates(keys, None) == [NEW, other_pending]
    assert activation_candidates(keys, "example.net") == [other_pending]


def test_repairs_finish_an_interrupted_activation() -> None:
    later = T0 + timedelta(days=30)
    new_active = key("s2", KeyState.ACTIVE, created=later)
    changes = plan_repairs([OLD, new_active, ED_OLD, OTHER_DOMAIN], later)
    assert [(c.key.key.selector, c.meta.state) for c in changes] == [("s1", KeyState.RETIRING)]
    assert plan_repairs([OLD, ED_OLD, OTHER_DOMAIN, NEW], later) == []
