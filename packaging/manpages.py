"""Entry point: write reputable(8) and reputable.toml(5) into OUTDIR. All the work is in reputable.manpages.

Run at package build time (packaging/debian/rules), from the repository root:

    python3 packaging/manpages.py OUTDIR

with Debian's python3 and nothing but the standard library and this checkout
importable; $SOURCE_DATE_EPOCH dates the pages.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run as a script, sys.path[0] is packaging/
    from reputable.manpages.build import main as build

    return build(sys.argv[1:], ROOT)


if __name__ == "__main__":
    raise SystemExit(main())
