"""The rotation planner as a pure function of (now, keys, policy): every transition and refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.keys.dnscheck import DnsStatus, RecordCheck
from reputable.keys.keyring import not_signing
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


@pytest.mark.parametrize("check", [MISSING, MISMATCH, UNCHECKED])
def test_no_activation_without_proof(check: RecordCheck) -> None:
    plan = plan_activation(NEW, [OLD, NEW], check, T0)
    assert isinstance(plan, Refusal)
    assert check.status.value in plan.reason
    assert check.detail in plan.reason


NOT_FOUND = RecordCheck(
    DnsStatus.ERROR,
    "cannot find the zone of s2._domainkey.example.com: resolver denies the root",
    servers_found=False,
)


@pytest.mark.parametrize(
    ("check", "step"),
    [
        (ERROR, "could not reach the domain's name servers (ns1 timed out): check [keys] "),
        (NOT_FOUND, "could not find the domain's name servers (cannot find the zone of "),
    ],
)
def test_a_record_that_could_not_be_checked_says_why_and_where_to_look(
    check: RecordCheck, step: str
) -> None:
    plan = plan_activation(NEW, [OLD, NEW], check, T0)
    assert isinstance(plan, Refusal)
    assert plan.reason.startswith(f"example.com s2 (rsa-sha256) stays pending: {step}")
    assert "record is error" not in plan.reason
    pending = next_step(NEW, check, T0, POLICY)
    assert pending.startswith(step) and "publish" not in pending
    assert pending.endswith("then `reputable keys activate example.com`")
    assert warnings(OLD, check, T0, POLICY) == [
        f"signing, but its record could not be checked: {pending.split('; then')[0]}"
    ]


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


def test_the_hints_for_an_ed25519_key_rotate_an_ed25519_key() -> None:
    refusal = plan_retirement(ED_OLD, [OLD, ED_OLD], T0, POLICY, force=False)
    assert isinstance(refusal, Refusal)
    assert "`reputable keys rotate example.com --algorithm ed25519`" in refusal.reason
    old_ed = next_step(ED_OLD, MATCHING, T0 + timedelta(days=181), POLICY)
    assert old_ed.endswith("`reputable keys rotate example.com --algorithm ed25519`")
    rsa_refusal = plan_retirement(OLD, [OLD, ED_OLD], T0, POLICY, force=False)
    assert isinstance(rsa_refusal, Refusal)
    assert "`reputable keys rotate example.com`" in rsa_refusal.reason


def test_an_active_key_that_does_not_sign_says_why_and_is_not_warned_as_signing() -> None:
    other = key("s1", KeyState.ACTIVE, domain="other.example")
    unsigned = not_signing(
        "other.example", Algorithm.RSA_SHA256, ["example.com"], [Algorithm.RSA_SHA256]
    )
    assert [n.setting for n in unsigned] == ['domains = ["example.com", "other.example"]']
    step = next_step(other, MISSING, T0, POLICY, unsigned)
    assert step.startswith("not signing: other.example is not in [signing] domains")
    assert 'set domains = ["example.com", "other.example"]' in step
    assert warnings(other, MISSING, T0, POLICY, unsigned) == []
    assert warnings(other, MISMATCH, T0, POLICY, unsigned) == []
    # The same key, signing, is warned about: the test above could fail.
    assert any("record is missing" in w for w in warnings(other, MISSING, T0, POLICY))


def test_why_a_key_would_not_sign() -> None:
    rsa_only = [Algorithm.RSA_SHA256]
    assert not_signing("example.com", Algorithm.RSA_SHA256, ["example.com"], rsa_only) == []
    (ed,) = not_signing("example.com", Algorithm.ED25519_SHA256, ["example.com"], rsa_only)
    assert ed.reason == "ed25519-sha256 is not in [signing] algorithms"
    assert ed.setting == 'algorithms = ["rsa-sha256", "ed25519-sha256"]'
    both = not_signing("other.example", Algorithm.ED25519_SHA256, ["example.com"], rsa_only)
    assert len(both) == 2
    (local,) = not_signing("localhost", Algorithm.RSA_SHA256, ["localhost"], rsa_only)
    assert local.setting == ""  # no setting makes localhost a mail domain
