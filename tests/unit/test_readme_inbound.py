"""The README's [inbound] lines are a configuration reputable takes, with the defaults it says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from reputable.config import InboundConfig, parse_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_inbound_block_parses_to_the_defaults() -> None:
    section = README.read_text().split("## Received mail", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```toml\n(.*?)```", section, re.DOTALL)
    config = parse_config(tomllib.loads(block), "README.md")
    assert config.inbound == InboundConfig()
    assert "dmarc_enforce = false" in block and "verify = true" in block
