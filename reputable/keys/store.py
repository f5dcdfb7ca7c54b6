"""The key store on disk: `<keys>/<domain>/<selector>.pem` + `<selector>.toml`. I/O.

Loading refuses keys that others can read (the message names the file and
the chmod that fixes it), anything at a key's path that is not a regular file
(a FIFO, a directory, a dangling symlink: read through `regular_file`, so
nothing blocks), and RSA keys RFC 8301 forbids signing with; writing creates
every file 0600 before a byte of it is written, atomically.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.errors import ConfigError, Problem
from reputable.keys.files import (
    SHARED_KEY,
    ensure_private_directory,
    is_shared,
    key_file_mode,
    write_atomic,
)
from reputable.keys.metadata import KeyMetadata, KeyState, dump_metadata, parse_metadata
from reputable.keys.selector import RESERVED_PREFIX
from reputable.log import Field
from reputable.regular_file import RegularFile, UnreadableFile, read_regular_file
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits, SHOULD use at least 2048.
MIN_RSA_BITS = 1024
GOOD_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class StoredKey:
    key: SigningKey
    meta: KeyMetadata
    path: Path


@dataclass(frozen=True, slots=True)
class StoreContents:
    keys: tuple[StoredKey, ...]
    problems: tuple[Problem, ...]


# Names the store keeps for the key that signs now (keys/active_names.py); no selector has it.
ACTIVE_PREFIX = RESERVED_PREFIX


def key_path(root: Path, domain: str, selector: str) -> Path:
    return root / domain / f"{selector}.pem"


def metadata_path(pem: Path) -> Path:
    return pem.with_suffix(".toml")


def algorithm_of(private_key: PrivateKey) -> Algorithm:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return Algorithm.ED25519_SHA256
    return Algorithm.RSA_SHA256


def bits_of(private_key: PrivateKey) -> int:
    return 256 if isinstance(private_key, ed25519.Ed25519PrivateKey) else private_key.key_size


def read_store(root: Path) -> StoreContents:
    """Every key under `root` with its metadata, and every problem found on the way."""
    keys: list[StoredKey] = []
    problems: list[Problem] = []
    if not root.is_dir():
        return StoreContents((), ())
    for pem in sorted(root.glob("*/*.pem")):
        if pem.name.startswith(ACTIVE_PREFIX):  # a name for the active key, not a key
            continue
        stored = _read_key(pem, problems)
        if stored is not None:
            keys.append(stored)
    return StoreContents(tuple(keys), tuple(problems))


def read_sound_store(root: Path) -> list[StoredKey]:
    """Every key under `root`; any unsafe or unreadable key refuses the whole store (ConfigError)."""
    contents = read_store(root)
    if contents.problems:
        raise ConfigError(list(contents.problems))
    return list(contents.keys)


def too_small(private_key: PrivateKey) -> bool:
    """An RSA key RFC 8301 forbids signing with (verifiers may treat its signatures as none)."""
    return isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size < MIN_RSA_BITS


def weak(key: SigningKey) -> bool:
    """An RSA key that signs but that RFC 8301 advises against (fewer than 2048 bits)."""
    private_key = key.private_key
    return isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size < GOOD_RSA_BITS


def weak_key_fields(key: SigningKey) -> dict[Field, object]:
    """The `key_weak` warning the milter logs at start and on each reload for a weak key."""
    return {
        Field.EVENT: "key_weak",
        Field.DOMAIN: key.domain,
        Field.SELECTOR: key.selector,
        Field.BITS: bits_of(key.private_key),
        Field.FIX: f"RFC 8301 asks for {GOOD_RSA_BITS} bits or more: "
        f"reputable keys rotate {key.domain} --bits {GOOD_RSA_BITS}",
    }


def _read_key(pem: Path, problems: list[Problem]) -> StoredKey | None:
    try:
        file = read_regular_file(pem)
    except UnreadableFile as exc:
        if not exc.missing:  # gone since the directory was listed: nothing to load, no problem
            problems.append(_not_a_key_file(pem, exc.reason))
        return None
    mode = stat.S_IMODE(file.info.st_mode)
    if mode & 0o077 and not _shared_with_group(pem, file.info):
        fix = (
            f"others must not read a private key; run: chmod 600 {pem} "
            f"(if someone may have read it, replace it: reputable keys rotate {pem.parent.name})"
        )
        problems.append(Problem(str(pem), "file mode", f"{mode:04o}", fix))
        return None
    loaded = _parse_key(pem, file.data, problems)
    if loaded is None:
        return None
    meta = _read_metadata(pem, file, loaded, problems)
    if meta is None:
        return None
    key = SigningKey(pem.parent.name, pem.stem, meta.algorithm, loaded)
    return StoredKey(key, meta, pem)


def _shared_with_group(pem: Path, info: os.stat_result) -> bool:
    """A key readable by its directory's group only, in a directory shared with that group
    (`reputable keys share`): the one way a key may be more than its owner's."""
    if stat.S_IMODE(info.st_mode) != SHARED_KEY or not is_shared(pem.parent):
        return False
    return info.st_gid == os.stat(pem.parent).st_gid


def _not_a_key_file(pem: Path, reason: str) -> Problem:
    if reason.startswith("a dangling symlink"):
        allowed = "a link to an existing key file; point it at one or remove it"
    elif reason.startswith("unreadable"):
        allowed = "a key file this user can read (the milter's user must own it, mode 0600)"
    else:
        allowed = (
            f"a regular file holding a PEM private key; remove it or move it out of {pem.parent}"
        )
    return Problem(str(pem), "private key", reason, allowed)


def _parse_key(pem: Path, data: bytes, problems: list[Problem]) -> PrivateKey | None:
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        problems.append(
            Problem(str(pem), "private key", "unreadable", f"a PEM private key ({exc})")
        )
        return None
    if not isinstance(loaded, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        problems.append(
            Problem(str(pem), "private key", type(loaded).__name__, "an RSA or Ed25519 key")
        )
        return None
    if too_small(loaded):
        fix = (
            f"at least {MIN_RSA_BITS} bits (RFC 8301 forbids signing with fewer); move it out "
            f"of the key store, then make a new key: reputable keys new {pem.parent.name}"
        )
        problems.append(Problem(str(pem), "private key", f"RSA of {bits_of(loaded)} bits", fix))
        return None
    return loaded


def _read_metadata(
    pem: Path, key_file: RegularFile, private_key: PrivateKey, problems: list[Problem]
) -> KeyMetadata | None:
    meta_file = metadata_path(pem)
    algorithm = algorithm_of(private_key)
    try:
        text = read_regular_file(meta_file).data.decode("utf-8")
    except UnreadableFile as exc:
        if exc.missing:
            # A key copied in by hand (e.g. from OpenDKIM): usable, and active.
            created = datetime.fromtimestamp(key_file.info.st_mtime).astimezone()
            return KeyMetadata(algorithm, bits_of(private_key), created, KeyState.ACTIVE, created)
        allowed = "a regular file written by `reputable keys`; remove it to take the key as active"
        problems.append(Problem(str(meta_file), "metadata", exc.reason, allowed))
        return None
    except UnicodeDecodeError as exc:
        problems.append(Problem(str(meta_file), "metadata", "unreadable", f"UTF-8 text ({exc})"))
        return None
    try:
        meta = parse_metadata(text)
    except ValueError as exc:
        problems.append(Problem(str(meta_file), "metadata", "unreadable", str(exc)))
        return None
    if meta.algorithm is not algorithm:
        problems.append(
            Problem(
                str(meta_file),
                "algorithm",
                meta.algorithm.value,
                f"{algorithm.value} (the key's type)",
            )
        )
        return None
    # The key, not what was written beside it, says how strong it is (`keys list` warns by it).
    return replace(meta, bits=bits_of(private_key))


def generate_private_key(algorithm: Algorithm, bits: int) -> PrivateKey:
    if algorithm is Algorithm.ED25519_SHA256:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def taken_selectors(root: Path, domain: str) -> set[str]:
    """Selectors in use under the domain, including metadata left without a key by a crash."""
    directory = root / domain
    if not directory.is_dir():
        return set()
    return {
        p.stem
        for p in directory.iterdir()
        if p.suffix in (".pem", ".toml")
        and not p.name.startswith(".")
        and not p.name.startswith(ACTIVE_PREFIX)
    }


def write_key(
    root: Path, domain: str, selector: str, private_key: PrivateKey, meta: KeyMetadata
) -> Path:
    """Store a new key; refuses to replace an existing one (FileExistsError).

    Metadata left without its key (a crash between the two writes) is
    overwritten: no key was ever loaded from it.
    """
    directory = root / domain
    ensure_private_directory(directory)
    pem = key_path(root, domain, selector)
    if pem.exists():
        raise FileExistsError(pem)
    pem_bytes = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Metadata first: a key file is only ever loaded with its metadata beside it.
    write_atomic(metadata_path(pem), dump_metadata(meta), key_file_mode(directory))
    write_atomic(pem, pem_bytes, key_file_mode(directory))
    return pem
