"""packaging/disable-services.sh leaves the test services disabled, whether or not systemd runs.

apt-ensure.sh runs it for the services of the packages it installs for the
tests (Postfix, OpenDKIM, knot). Here it runs on a scratch root holding the
real unit files of those packages, enabled as their packages enable them;
the machine's own units are never touched (and are checked to be as they were).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "packaging" / "disable-services.sh"
UNITS = ("knot.service", "opendkim.service", "postfix.service")
UNIT_DIR = Path("/lib/systemd/system")


def is_enabled(root: Path, unit: str) -> str:
    done = subprocess.run(
        ["systemctl", f"--root={root}", "is-enabled", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def test_the_test_services_are_left_disabled_without_a_running_systemd(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(UNIT_DIR / unit, root / "lib/systemd/system" / unit)
    enabled = subprocess.run(
        ["systemctl", f"--root={root}", "enable", *UNITS], capture_output=True, check=False
    )
    assert enabled.returncode == 0, enabled.stderr
    assert [is_enabled(root, u) for u in UNITS] == ["enabled"] * len(UNITS)
    machine = {unit: is_enabled(Path("/"), unit) for unit in UNITS}

    done = subprocess.run(
        ["sh", str(SCRIPT), "--root", str(root), *UNITS, "not-installed.service"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert [is_enabled(root, u) for u in UNITS] == ["disabled"] * len(UNITS)
    assert list((root / "etc/systemd/system").rglob("*.service")) == []  # no link left to boot
    assert {unit: is_enabled(Path("/"), unit) for unit in UNITS} == machine


def test_apt_ensure_leaves_services_it_did_not_install_as_they_are() -> None:
    """Only what it installs is disabled: a Postfix already there may be the one in use."""
    machine = {unit: is_enabled(Path("/"), unit) for unit in UNITS}
    packages = [unit.removesuffix(".service") for unit in UNITS]
    done = subprocess.run(
        ["sh", str(ROOT / "packaging" / "apt-ensure.sh"), *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "")  # all installed: nothing to do
    assert {unit: is_enabled(Path("/"), unit) for unit in UNITS} == machine
