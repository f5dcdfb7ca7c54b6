"""Reading the sources, dating the pages and writing them: the only I/O of reputable.manpages.

The pages are dated by $SOURCE_DATE_EPOCH (set by dpkg-buildpackage), else by
the last commit: the same sources give the same bytes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from reputable import __version__
from reputable.cli import build_parser
from reputable.config import _SCHEMA, DEFAULT_PATH, ENV_VAR, SigningConfig
from reputable.errors import EX_CONFIG, EX_USAGE
from reputable.manpages.annotated_config import EXAMPLE
from reputable.manpages.command_page import reputable_8
from reputable.manpages.config_page import reputable_toml_5
from reputable.manpages.sources import ManpageError, Sources


def read_sources(root: Path) -> Sources:
    """Everything the pages are made of, from the repository at root."""
    return Sources(
        parser=build_parser(),
        version=__version__,
        schema=_SCHEMA,
        example=(root / EXAMPLE).read_text(encoding="utf-8"),
        config_path=str(DEFAULT_PATH),
        keys_path=str(SigningConfig().keys),
        env_var=ENV_VAR,
        ex_usage=EX_USAGE,
        ex_config=EX_CONFIG,
    )


def page_date(environ: Mapping[str, str], root: Path) -> str:
    """The .TH date: $SOURCE_DATE_EPOCH (reproducible-builds.org), else the last commit's."""
    epoch = environ.get("SOURCE_DATE_EPOCH", "")
    if not epoch:
        git = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            check=False,
        )
        epoch = git.stdout.strip() if git.returncode == 0 else ""
    if not epoch.isdigit():
        raise ManpageError("set SOURCE_DATE_EPOCH (seconds since 1970) to date the pages")
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d")


def render_pages(sources: Sources, date: str) -> dict[str, str]:
    """Each page's file name with its text."""
    return {
        "reputable.8": reputable_8(sources, date),
        "reputable.toml.5": reputable_toml_5(sources, date),
    }


def main(argv: Sequence[str] | None, root: Path) -> int:
    """`manpages.py OUTDIR`: write both pages of the repository at root into OUTDIR."""
    parser = argparse.ArgumentParser(description="Write reputable.8 and reputable.toml.5.")
    parser.add_argument("outdir", type=Path)
    outdir: Path = parser.parse_args(argv).outdir
    try:
        pages = render_pages(read_sources(root), page_date(os.environ, root))
    except ManpageError as exc:
        print(f"manpages.py: {exc}", file=sys.stderr)
        return 1
    outdir.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (outdir / name).write_text(text, encoding="ascii")
    return 0
