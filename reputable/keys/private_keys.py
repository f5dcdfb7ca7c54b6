"""Private keys as OpenDKIM and dkimpy wrote them. Pure, but `read_private_key` reads a file."""

from __future__ import annotations

import base64
import binascii
import errno
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.errors import ConfigError, Problem
from reputable.keys.record import public_key_base64
from reputable.keys.store import MIN_RSA_BITS, PrivateKey, bits_of, too_small
from reputable.regular_file import UnreadableFile, read_regular_file


def parse_private_key(data: bytes) -> PrivateKey:
    """A PEM key (PKCS#1 or PKCS#8), DER, or dkimpy's base64 Ed25519 seed; ValueError says why not.

    dkimpy (dknewkey, dkimpy-milter's KeyFileEd25519) stores an Ed25519 key as
    the base64 of its 32-byte RFC 8032 seed, not as PEM.
    """
    text = data.strip()
    if text.startswith(b"v=DKIM1") or b"IN\tTXT" in text or b"IN TXT" in text:
        raise ValueError("a private key; this is a DNS record: name the private key file")
    if b"-----BEGIN" in text:
        if b"PUBLIC KEY-----" in text:
            raise ValueError("a private key; this file holds a public key")
        loaded = _load(lambda: serialization.load_pem_private_key(text, password=None))
    else:
        loaded = _load(lambda: _load_raw(data))
    if not isinstance(loaded, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"an RSA or Ed25519 key, not {type(loaded).__name__}")
    return loaded


def _load(load: Callable[[], object]) -> object:
    try:
        return load()
    except TypeError:
        raise ValueError("a key without a passphrase (a milter cannot type one in)") from None
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise ValueError(
            "a PEM private key (RSA or Ed25519) or dkimpy's base64 Ed25519 seed"
        ) from None


def _load_raw(data: bytes) -> object:
    try:
        raw = base64.b64decode(b"".join(data.split()), validate=True)
    except binascii.Error:
        return serialization.load_der_private_key(data, password=None)
    if len(raw) == 32:
        return ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    return serialization.load_der_private_key(raw, password=None)


def read_private_key(path: Path) -> PrivateKey:
    """The key in `path`, or a ConfigError naming the file (never its contents).

    Only a regular file is read (a FIFO or device never blocks the import), and
    an RSA key RFC 8301 forbids signing with is refused: the store would not load it.
    """
    try:
        data = read_regular_file(path).data
    except UnreadableFile as exc:
        problem = Problem(str(path), "private key", exc.reason, "a regular file holding a key")
        if exc.missing:
            problem = Problem(str(path), "private key", "unreadable", os.strerror(errno.ENOENT))
        raise ConfigError([problem]) from None
    try:
        private_key = parse_private_key(data)
    except ValueError as exc:
        raise ConfigError(
            [Problem(str(path), "private key", "not a key", f"expected {exc}")]
        ) from None
    if too_small(private_key):
        fix = f"at least {MIN_RSA_BITS} bits (RFC 8301); make a new key: reputable keys new"
        value = f"RSA of {bits_of(private_key)} bits"
        raise ConfigError([Problem(str(path), "private key", value, fix)])
    return private_key


def same_key(a: PrivateKey, b: PrivateKey) -> bool:
    return type(a) is type(b) and public_key_base64(a) == public_key_base64(b)
