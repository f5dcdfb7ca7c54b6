"""Selector names: the date-based default scheme and the syntax check. Pure."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime

from reputable.signing.algorithm import Algorithm

# RFC 6376 §3.1: a selector is a sub-domain (dot-separated labels).
_SELECTOR = re.compile(
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def is_valid_selector(selector: str) -> bool:
    return bool(_SELECTOR.match(selector))


def default_selector(now: datetime, algorithm: Algorithm, existing: Collection[str]) -> str:
    """`s2026-11` for RSA, `e2026-11` for Ed25519; `-2`, `-3`… when the month's name is taken."""
    prefix = "e" if algorithm is Algorithm.ED25519_SHA256 else "s"
    base = f"{prefix}{now:%Y-%m}"
    if base not in existing:
        return base
    n = 2
    while f"{base}-{n}" in existing:
        n += 1
    return f"{base}-{n}"
