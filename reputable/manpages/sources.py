"""What the man pages are made of, and the error when those sources disagree. Pure."""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping
from dataclasses import dataclass


class ManpageError(Exception):
    """The sources disagree, or say something this generator cannot show; the text says where."""


@dataclass(frozen=True, slots=True)
class Sources:
    """What the pages are made of, read from the repository by `build.read_sources`."""

    parser: argparse.ArgumentParser
    version: str
    schema: Mapping[str, Collection[str]]
    example: str  # conf/reputable.toml
    config_path: str
    keys_path: str
    env_var: str
    ex_usage: int
    ex_config: int
