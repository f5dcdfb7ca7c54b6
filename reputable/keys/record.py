"""The DKIM key TXT record of a key, as a value and as zone-file text. Pure."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.signing.algorithm import Algorithm

MAX_STRING = 255  # RFC 1035 §3.3: one character-string holds at most 255 bytes

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def public_key_base64(private_key: PrivateKey) -> str:
    """The p= value: SubjectPublicKeyInfo for RSA (RFC 6376 §3.6.1), raw Ed25519 (RFC 8463 §4)."""
    public = private_key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(raw).decode("ascii")


def key_type(algorithm: Algorithm) -> str:
    return "ed25519" if algorithm is Algorithm.ED25519_SHA256 else "rsa"


def record_value(algorithm: Algorithm, private_key: PrivateKey) -> str:
    """The whole TXT value, e.g. "v=DKIM1; k=rsa; p=MIIBIjAN..."."""
    return f"v=DKIM1; k={key_type(algorithm)}; p={public_key_base64(private_key)}"


def split_strings(value: str, size: int = MAX_STRING) -> list[str]:
    """The value cut into character-strings of at most `size` bytes (receivers join them)."""
    data = value.encode("ascii")
    return [data[i : i + size].decode("ascii") for i in range(0, len(data), size)] or [""]


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def zone_file_line(selector: str, domain: str, value: str, ttl: int | None = None) -> str:
    """A BIND zone-file record, the value split into quoted strings of at most 255 bytes."""
    strings = split_strings(value)
    ttl_text = f"{ttl} " if ttl is not None else ""
    head = f"{record_name(selector, domain)}. {ttl_text}IN TXT"
    if len(strings) == 1:
        return f'{head} "{strings[0]}"'
    body = "\n".join(f'    "{s}"' for s in strings)
    return f"{head} (\n{body} )"
