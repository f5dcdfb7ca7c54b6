"""Signing keys and the one cryptographic step of DKIM: signing the header hash input. Pure.

All calls into `cryptography` live here, so the rest of the package handles bytes only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from reputable.signing.algorithm import Algorithm

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

ED25519_SIGNATURE_SIZE = 64  # RFC 8032 §5.1.6: R || S, 32 bytes each


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key and where its public half is published: `selector`._domainkey.`domain`."""

    domain: str
    selector: str
    algorithm: Algorithm
    private_key: PrivateKey = field(repr=False)  # never in reprs, hence never in logs

    @property
    def label(self) -> str:
        """ "domain/selector", as the logs name a signature."""
        return f"{self.domain}/{self.selector}"

    def __post_init__(self) -> None:
        expected = (
            ed25519.Ed25519PrivateKey
            if self.algorithm is Algorithm.ED25519_SHA256
            else rsa.RSAPrivateKey
        )
        if not isinstance(self.private_key, expected):
            raise ValueError(
                f"key {self.selector}._domainkey.{self.domain}: {self.algorithm} needs a "
                f"{expected.__name__}, got {type(self.private_key).__name__}"
            )


def signature_size(key: SigningKey) -> int:
    """Bytes in a signature by `key`, known before signing (the b= placeholder needs it)."""
    if isinstance(key.private_key, ed25519.Ed25519PrivateKey):
        return ED25519_SIGNATURE_SIZE
    return (key.private_key.key_size + 7) // 8


def sign_digest_input(key: SigningKey, data: bytes) -> bytes:
    """The b= signature over `data`, the header hash input of RFC 6376 §3.7.

    RSA: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 6376 §3.3.1). Ed25519: RFC 8463 §3 signs
    the SHA-256 hash of the data with PureEdDSA, not the data itself.
    """
    if isinstance(key.private_key, ed25519.Ed25519PrivateKey):
        return key.private_key.sign(hashlib.sha256(data).digest())
    return key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
