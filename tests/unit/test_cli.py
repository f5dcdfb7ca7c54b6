"""The command line: global options anywhere, and words that fit the command that was run."""

from __future__ import annotations

from pathlib import Path

import pytest

from reputable.cli import build_parser, config_argument, main
from reputable.errors import EX_CONFIG

# Every command, with what it needs besides --config to get as far as reading the config.
COMMANDS = [
    ["milter"],
    ["sign"],
    ["check"],
    ["check", "--json"],
    ["keys", "new", "example.com"],
    ["keys", "dns"],
    ["keys", "rotate"],
    ["keys", "list"],
    ["keys", "activate"],
    ["keys", "retire", "example.com", "s1"],
    ["keys", "import", "--key-table", "/nonexistent/KeyTable"],
    ["setup", "postfix"],
]


def placements(command: list[str], option: list[str]) -> list[list[str]]:
    """`option` before the command, after it, and between a group and its subcommand."""
    found = [option + command, command + option]
    if command[0] in ("keys", "setup"):
        found.append(command[:1] + option + command[1:])
    return found


def every_placement() -> list[list[str]]:
    return [argv for command in COMMANDS for argv in placements(command, ["--config", "FILE"])]


@pytest.mark.parametrize("argv", every_placement(), ids=" ".join)
def test_config_is_taken_before_or_after_any_command(argv: list[str]) -> None:
    assert config_argument(build_parser().parse_args(argv)) == "FILE"


def test_without_config_the_default_applies() -> None:
    assert config_argument(build_parser().parse_args(["keys", "list"])) is None


def test_the_innermost_config_wins() -> None:
    args = build_parser().parse_args(["--config", "A", "keys", "--config", "B", "list"])
    assert config_argument(args) == "B"


@pytest.mark.parametrize("argv", every_placement(), ids=" ".join)
def test_a_bad_config_stops_every_command_in_its_own_words(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[signing]\nalgorithms = ["rsa-sha1"]\n')
    argv = [str(bad) if word == "FILE" else word for word in argv]
    assert main(argv) == EX_CONFIG
    err = capsys.readouterr().err
    assert f'{bad}: signing.algorithms = ["rsa-sha1"]: expected one of' in err
    command = " ".join(w for w in argv if w not in ("--config", str(bad)) and w.isalpha())
    if command == "milter":
        assert err.startswith("reputable: refusing to start; fix these and try again:\n")
    else:
        assert err.startswith(f"reputable {command}: fix these and run it again:\n")
        assert "refusing to start" not in err
