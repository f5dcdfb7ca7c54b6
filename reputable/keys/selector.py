"""Selector names: the date-based default scheme and the syntax check. Pure."""

from __future__ import annotations

import re

# RFC 6376 §3.1: a selector is a sub-domain (dot-separated labels).
_SELECTOR = re.compile(
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


# The key store names the key that signs now "active-rsa.pem" and "active-rsa.selector"
# (keys/active_names.py): no selector may be called so.
RESERVED_PREFIX = "active-"


def is_valid_selector(selector: str) -> bool:
    return bool(_SELECTOR.match(selector)) and not selector.startswith(RESERVED_PREFIX)
