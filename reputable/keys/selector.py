"""Selector names: the date-based default scheme and the syntax check. Pure."""

from __future__ import annotations

import re

# RFC 6376 §3.1: a selector is a sub-domain (dot-separated labels).
_SELECTOR = re.compile(
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def is_valid_selector(selector: str) -> bool:
    return bool(_SELECTOR.match(selector))
