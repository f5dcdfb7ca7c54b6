"""The DKIM signing algorithms reputable signs with (the a= tag). Pure."""

from __future__ import annotations

from enum import StrEnum


class Algorithm(StrEnum):
    """An a= value: RFC 6376 §3.3 (rsa-sha256) and RFC 8463 §3 (ed25519-sha256).

    rsa-sha1 is left out on purpose: RFC 8301 §3.1 says signers MUST NOT use it.
    """

    RSA_SHA256 = "rsa-sha256"
    ED25519_SHA256 = "ed25519-sha256"
