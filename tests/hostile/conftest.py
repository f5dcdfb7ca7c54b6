"""What the attacks share: a DNS server of their own and a key store with one RSA-2048 key."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from tests.integration.harness.dnsserver import DnsServer


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer([("127.0.0.1", 0)]) as server:
        yield server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    config = Config(signing=SigningConfig(domains=("example.com",), keys=root))
    assert new_command(config, "example.com", "r1", "rsa", 2048, False, out=io.StringIO()) == 0
    return root
