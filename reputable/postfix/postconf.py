"""Running Postfix's own commands (postconf, postfix) for one Postfix instance. I/O.

Without a config directory, Postfix's default is used (or $MAIL_CONFIG, which
Postfix's commands read themselves). Every failure is a PostfixError with one
line to show, never a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reputable.errors import ReputableError
from reputable.postfix.commands import Commands, line
from reputable.postfix.settings import PARAMETERS, PostfixSettings, parse_parameters, parse_settings

TIMEOUT_S = 30


class PostfixError(ReputableError):
    """A Postfix command is missing or failed; the message is one line for the admin."""


class PostfixMissing(PostfixError):
    """postconf is not installed: this host runs no Postfix."""


def find_command(name: str) -> str | None:
    """A Postfix command, also when /usr/sbin is not on PATH (as for most users)."""
    found = shutil.which(name) or f"/usr/sbin/{name}"
    return found if Path(found).is_file() else None


@dataclass(frozen=True, slots=True)
class Postfix:
    commands: Commands = field(default_factory=Commands)

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run a command that `self.commands` built, by the program's full path."""
        program = find_command(argv[0])
        if program is None:
            raise PostfixMissing(
                f"{argv[0]} not found: is Postfix installed? (apt-get install postfix)"
            )
        try:
            return subprocess.run(
                [program, *argv[1:]], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostfixError(f"{line(argv)}: {exc}") from None

    def check(self, argv: Sequence[str]) -> str:
        """Run it; its output, or a PostfixError with what it said on failure."""
        done = self.run(argv)
        if done.returncode != 0:
            raise PostfixError(f"{line(argv)} failed: {last_line(done.stderr or done.stdout)}")
        return done.stdout

    def postconf(self, *args: str) -> str:
        return self.check(self.commands.postconf(*args))

    def read_settings(self) -> PostfixSettings:
        """main.cf, the defaults reputable looks at, master.cf's services and their overrides."""
        return parse_settings(
            self.postconf("-nx"),
            self.postconf("-dx", *PARAMETERS),
            self.postconf("-M"),
            self.postconf("-Px"),
            self.postconf("-n"),
        )

    def main_cf(self) -> Path:
        directory = parse_parameters(self.postconf("config_directory"))["config_directory"]
        return Path(directory) / "main.cf"

    def is_running(self) -> bool:
        return self.run(self.commands.postfix("status")).returncode == 0

    def reload(self) -> None:
        self.check(self.commands.reload())


def last_line(text: str) -> str:
    """The line a Postfix command ends on, without its "postconf: fatal:" prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    _, fatal, rest = lines[-1].partition("fatal: ")
    return rest if fatal else lines[-1]
