"""The metadata file beside each key (`<selector>.toml`): algorithm, size, state and when. Pure."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from reputable.signing.algorithm import Algorithm


class KeyState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRING = "retiring"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class KeyMetadata:
    algorithm: Algorithm
    bits: int
    created: datetime
    state: KeyState
    changed: datetime  # when the key entered its current state
    activated: datetime | None = None  # began signing
    retiring: datetime | None = None  # stopped signing; its record stays for the grace period
    retired: datetime | None = None  # done; its record may go (or is revoked)
    revoked: bool = False  # its record was replaced by an empty p= (RFC 6376 §3.6.1)

    def entering(self, state: KeyState, now: datetime) -> KeyMetadata:
        """The metadata after a change to `state` at `now`, its timestamp recorded."""
        stamps = {
            KeyState.ACTIVE: "activated",
            KeyState.RETIRING: "retiring",
            KeyState.RETIRED: "retired",
        }
        changes: dict[str, object] = {"state": state, "changed": now}
        if state in stamps:
            changes[stamps[state]] = now
        return replace(self, **changes)  # type: ignore[arg-type]


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dump_metadata(meta: KeyMetadata) -> bytes:
    lines = [
        "# reputable key metadata; edit with `reputable keys`, not by hand",
        f'algorithm = "{meta.algorithm.value}"',
        f"bits = {meta.bits}",
        f'created = "{format_time(meta.created)}"',
        f'state = "{meta.state.value}"',
        f'changed = "{format_time(meta.changed)}"',
    ]
    for name in ("activated", "retiring", "retired"):
        moment = getattr(meta, name)
        if moment is not None:
            lines.append(f'{name} = "{format_time(moment)}"')
    if meta.revoked:
        lines.append("revoked = true")
    return ("\n".join(lines) + "\n").encode("ascii")


def parse_metadata(text: str) -> KeyMetadata:
    """Raises ValueError naming the bad field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not TOML: {exc}") from None
    try:
        algorithm = Algorithm(data["algorithm"])
        state = KeyState(data.get("state", "active"))
        bits = int(data["bits"])
        created = _parse_time(data["created"])
        changed = _parse_time(data.get("changed", data["created"]))
        stamps = {
            n: _parse_time(data[n]) if n in data else None
            for n in ("activated", "retiring", "retired")
        }
        revoked = data.get("revoked", False) is True
    except KeyError as exc:
        raise ValueError(f"missing field {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    return KeyMetadata(algorithm, bits, created, state, changed, revoked=revoked, **stamps)


def _parse_time(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
