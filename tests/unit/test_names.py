"""No module of ours may shadow a dependency (pymilter's milter/Milter/mime, dkim, spf, dns)."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import site
from pathlib import Path

import reputable

ROOT = Path(__file__).resolve().parents[2]
RESERVED = {"milter", "Milter", "mime", "dkim", "spf", "dns", "authres"}


def test_top_level_names_resolve_to_the_dependencies() -> None:
    # Installed means under a directory of installed packages: a venv's
    # site-packages, or Debian's dist-packages for its python3-* packages.
    installed = [Path(d).resolve() for d in site.getsitepackages()]
    for name in ("milter", "Milter", "mime", "dkim", "spf", "dns"):
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        assert spec.origin is not None, name
        origin = Path(spec.origin).resolve()
        assert any(origin.is_relative_to(d) for d in installed), (
            f"{name} is not installed: {origin}"
        )


def test_repository_root_has_no_module_named_like_a_dependency() -> None:
    for name in RESERVED:
        assert not (ROOT / f"{name}.py").exists()
        assert not (ROOT / name / "__init__.py").exists()


def test_no_module_inside_the_package_is_named_like_a_dependency() -> None:
    # DESIGN names two exceptions: the adapter package reputable.milter and the
    # check module reputable.checks.spf. Both are safe: imports are absolute and
    # the package is never put on sys.path itself (the first test proves `spf`
    # and `milter` still resolve to the dependencies).
    inner_reserved = RESERVED - {"milter", "spf"}
    for info in pkgutil.walk_packages(reputable.__path__, "reputable."):
        assert info.name.rsplit(".", 1)[-1] not in inner_reserved, info.name


def test_every_module_imports() -> None:
    for info in pkgutil.walk_packages(reputable.__path__, "reputable."):
        if info.name != "reputable.__main__":
            importlib.import_module(info.name)
