"""The alerting rules shipped for Prometheus, checked and unit-tested by Prometheus' promtool.

The rules must load (`promtool check rules`), fire and stay quiet as their
test file says (`promtool test rules`), and name only metrics the daemon
serves; what /metrics serves must pass promtool's own lint.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reputable.config import Config
from reputable.keys.keyring import Keyring
from reputable.metrics import Metrics
from reputable.runtime import KeyAge, Runtime, RuntimeHolder, signing_policy

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "packaging" / "prometheus"


def promtool(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *arguments],
        cwd=RULES,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def served() -> str:
    config = Config()
    made = datetime.now(UTC)
    runtime = Runtime(
        config,
        ("example.com",),
        Keyring(),
        signing_policy(config),
        (KeyAge("example.com", "s1", "active", made),),
    )
    return Metrics(RuntimeHolder(runtime)).exposition().decode()


def test_the_rules_load_and_pass_their_tests() -> None:
    checked = promtool("check", "rules", "reputable.rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout
    tested = promtool("test", "rules", "reputable.rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_rules_name_only_metrics_the_daemon_serves() -> None:
    rules = (RULES / "reputable.rules.yml").read_text()
    named = set(re.findall(r"\b(reputable_[a-z_]+)", rules))
    families = set(re.findall(r"^# TYPE (\S+)", served(), re.M))
    # A counter family is served as NAME_total.
    offered = families | {f"{name}_total" for name in families}
    assert named and named <= offered, named - offered


def test_what_metrics_serves_passes_promtool_s_lint() -> None:
    linted = promtool("check", "metrics", stdin=served())
    assert linted.returncode == 0, linted.stdout + linted.stderr
