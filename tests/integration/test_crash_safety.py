"""SIGKILL at every write point of `keys rotate`, `keys activate` and `keys retire`: the store stays sound.

strace stops the command at the Nth write, fsync or rename it makes and kills
it there (SIGKILL, nothing to catch), for every N the command reaches. After
each kill: every key loads, no key file exists without its metadata, and
exactly the key that should sign does: the old active key until the new one
is proven and marked active.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reputable.config import load_config
from reputable.keys.keyring import build_keyring
from reputable.keys.metadata import KeyState
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from reputable.signing.algorithm import Algorithm
from tests.integration.harness.dnsserver import DnsServer

DOMAIN = "crash.example.com"
STRACE = shutil.which("strace") or "/usr/bin/strace"
WRITE_CALLS = ("write", "fsync", "rename")


# No .pyc writes: the Nth write must be the same write in every run.
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def reputable(
    config: Path, *args: str, inject: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reputable", "keys", *args, "--config", str(config)]
    if inject is not None:
        command = [
            STRACE,
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=" + ",".join(WRITE_CALLS),  # strace injects only into traced calls
            "-e",
            f"inject={inject}",
            *command,
        ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=ENV)


def store_write_points(config: Path, *args: str) -> list[tuple[str, int]]:
    """(call, N) of every write call the command makes to the key store, run to the end on a copy.

    Writes elsewhere (standard output) are left out: only the store's files matter.
    """
    trace = config.parent / "trace.txt"
    command = [STRACE, "-f", "-qq", "-y", "-o", str(trace), "-e", f"trace={','.join(WRITE_CALLS)}"]
    done = subprocess.run(
        [*command, sys.executable, "-m", "reputable", "keys", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=ENV,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    store = str(load_config(str(config)).signing.keys)
    seen = dict.fromkeys(WRITE_CALLS, 0)
    points = []
    for line in trace.read_text().splitlines():
        match = re.search(rf"\b({'|'.join(WRITE_CALLS)})\((.*)", line)
        if match is None:
            continue
        seen[match[1]] += 1
        if store in match[2]:
            points.append((match[1], seen[match[1]]))
    return points


def sound_store(config: Path) -> dict[str, KeyState]:
    """The store's invariants; returns each selector's state."""
    settings = load_config(str(config))
    contents = read_store(settings.signing.keys)
    assert contents.problems == (), contents.problems
    directory = settings.signing.keys / DOMAIN
    for pem in directory.glob("*.pem"):
        if pem.name.startswith("active-"):
            continue  # the link to the key that signs (below)
        assert pem.with_suffix(".toml").exists(), f"{pem} without its metadata"
    # The names Exim reads lead to a key of the store, and both name the same one: at any
    # point a crash leaves them at the old active key or the new one, never half.
    link, named = directory / "active-rsa.pem", directory / "active-rsa.selector"
    if named.exists():
        selector = named.read_text().strip()
        assert selector in {k.key.selector for k in contents.keys}, selector
        assert (directory / f"{selector}.pem").exists()
        assert link.resolve().exists()
    return {k.key.selector: k.meta.state for k in contents.keys}


def signer(config: Path) -> str:
    settings = load_config(str(config))
    ring = build_keyring(read_store(settings.signing.keys).keys, [DOMAIN], [Algorithm.RSA_SHA256])
    (key,) = ring.keys_for(DOMAIN)
    return key.selector


@pytest.fixture
def base(tmp_path: Path, dns_server: DnsServer) -> Path:
    """A store with one active key s1, and a config asking our DNS server for proof."""
    root = tmp_path / "base"
    root.mkdir()
    config = root / "reputable.toml"
    host, port = dns_server.address
    config.write_text(
        f'[signing]\ndomains = ["{DOMAIN}"]\nkeys = "{root / "keys"}"\n'
        f'[keys]\nverify_nameservers = ["{host}:{port}"]\n[log]\nlevel = "warning"\n'
    )
    assert reputable(config, "new", DOMAIN, "--selector", "s1").returncode == 0
    return config


def copy_of(config: Path, name: str) -> Path:
    target = config.parent.parent / name
    shutil.copytree(config.parent, target)
    text = config.read_text().replace(str(config.parent), str(target))
    (target / "reputable.toml").write_text(text)
    return target / "reputable.toml"


def kill_points(config: Path, name: str, *args: str) -> list[tuple[str, int]]:
    points = store_write_points(copy_of(config, f"{name}-count"), *args)
    calls = {call for call, _ in points}
    assert calls == set(WRITE_CALLS), points
    return points


def test_rotate_killed_at_every_write_point(base: Path) -> None:
    points = kill_points(base, "rotate", "rotate", DOMAIN)
    for call, n in points:
        config = copy_of(base, f"rotate-{call}-{n}")
        killed = reputable(config, "rotate", DOMAIN, inject=f"{call}:signal=KILL:when={n}")
        assert killed.returncode != 0, f"{call} #{n} was not reached"
        states = sound_store(config)
        assert states["s1"] is KeyState.ACTIVE
        assert signer(config) == "s1", f"after a kill at {call} #{n}"
        if KeyState.PENDING not in states.values():
            again = reputable(config, "rotate", DOMAIN)  # the interrupted rotation, done again
            assert again.returncode == 0, (
                f"after a kill at {call} #{n}: {again.stdout}{again.stderr}"
            )
        states = sound_store(config)
        assert sorted(states.values()) == sorted([KeyState.ACTIVE, KeyState.PENDING])
        assert signer(config) == "s1"
    print(f"rotate: killed at {len(points)} write points: {points}")


def test_activate_killed_at_every_write_point(base: Path, dns_server: DnsServer) -> None:
    assert reputable(base, "rotate", DOMAIN).returncode == 0
    settings = load_config(str(base))
    (pending,) = [
        k for k in read_store(settings.signing.keys).keys if k.meta.state is KeyState.PENDING
    ]
    new = pending.key.selector
    name = record_name(new, DOMAIN)
    dns_server.set_txt(
        name, *split_strings(record_value(pending.key.algorithm, pending.key.private_key))
    )
    try:
        points = kill_points(base, "activate", "activate", DOMAIN)
        for call, n in points:
            config = copy_of(base, f"activate-{call}-{n}")
            killed = reputable(config, "activate", DOMAIN, inject=f"{call}:signal=KILL:when={n}")
            assert killed.returncode != 0
            states = sound_store(config)
            # The proven key signs once (and only once) its metadata says active.
            assert signer(config) == (new if states[new] is KeyState.ACTIVE else "s1")
            assert states["s1"] in (KeyState.ACTIVE, KeyState.RETIRING)
            finished = reputable(config, "activate", DOMAIN)
            states = sound_store(config)
            assert states == {"s1": KeyState.RETIRING, new: KeyState.ACTIVE}, finished.stdout
        print(f"activate: killed at {len(points)} write points: {points}")
    finally:
        dns_server.remove(name)
