"""The key store on disk: `<keys>/<domain>/<selector>.pem` + `<selector>.toml`. I/O.

Loading refuses keys that others can read (the message names the file and
the chmod that fixes it); writing creates every file 0600 before a byte of it
is written, atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from reputable.errors import ConfigError, Problem
from reputable.keys.files import ensure_private_directory, unsafe_mode, write_atomic
from reputable.keys.metadata import KeyMetadata, KeyState, dump_metadata, parse_metadata
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class StoredKey:
    key: SigningKey
    meta: KeyMetadata
    path: Path


@dataclass(frozen=True, slots=True)
class StoreContents:
    keys: tuple[StoredKey, ...]
    problems: tuple[Problem, ...]


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


def _read_key(pem: Path, problems: list[Problem]) -> StoredKey | None:
    mode = unsafe_mode(pem)
    if mode is not None:
        fix = f"others must not read a private key; run: chmod 600 {pem}"
        problems.append(Problem(str(pem), "file mode", f"{mode:04o}", fix))
        return None
    try:
        loaded = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        problems.append(
            Problem(str(pem), "private key", "unreadable", f"a PEM private key ({exc})")
        )
        return None
    if not isinstance(loaded, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        problems.append(
            Problem(str(pem), "private key", type(loaded).__name__, "an RSA or Ed25519 key")
        )
        return None
    meta = _read_metadata(pem, loaded, problems)
    if meta is None:
        return None
    key = SigningKey(pem.parent.name, pem.stem, meta.algorithm, loaded)
    return StoredKey(key, meta, pem)


def _read_metadata(
    pem: Path, private_key: PrivateKey, problems: list[Problem]
) -> KeyMetadata | None:
    meta_file = metadata_path(pem)
    algorithm = algorithm_of(private_key)
    if not meta_file.exists():
        # A key copied in by hand (e.g. from OpenDKIM): usable, and active.
        created = datetime.fromtimestamp(pem.stat().st_mtime).astimezone()
        return KeyMetadata(algorithm, bits_of(private_key), created, KeyState.ACTIVE, created)
    try:
        meta = parse_metadata(meta_file.read_text(encoding="utf-8"))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
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
    return meta


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
        if p.suffix in (".pem", ".toml") and not p.name.startswith(".")
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
    write_atomic(metadata_path(pem), dump_metadata(meta))
    write_atomic(pem, pem_bytes)
    return pem
