"""Keys and an event loop shared by the milter's in-process tests."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RSA (r1) and an Ed25519 (e1) key for example.com."""
    root = tmp_path_factory.mktemp("keys")
    config = Config(signing=SigningConfig(domains=("example.com",), keys=root))
    for algorithm, selector in (("rsa", "r1"), ("ed25519", "e1")):
        assert (
            new_command(config, "example.com", selector, algorithm, 2048, False, out=io.StringIO())
            == 0
        )
    return root


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop for connections driven by hand (the fuzzing): they schedule on it, it seldom runs."""
    made = asyncio.new_event_loop()
    yield made
    made.close()
