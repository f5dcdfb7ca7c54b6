"""The Postfix command lines reputable prints for an admin to run, and runs itself with --apply. Pure.

Each one is built as an argv first and printed with shell quoting, so that the
printed line and what `reputable setup postfix --apply` runs are the same.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

MAIN_CF = "main.cf"


@dataclass(frozen=True, slots=True)
class Commands:
    """postconf and postfix for one Postfix instance: its config directory, or the default."""

    config_dir: str | None = None

    def postconf(self, *args: str) -> list[str]:
        return ["postconf", *self._instance(), *args]

    def postfix(self, *args: str) -> list[str]:
        return ["postfix", *self._instance(), *args]

    def reload(self) -> list[str]:
        return self.postfix("reload")

    def set(self, name: str, value: str, source: str = MAIN_CF) -> list[str]:
        """Set a parameter where it comes from: main.cf (or a default), or a service's `-o`.

        postconf -P refuses white space in a value: give it lists with commas only.
        """
        if source in ("", MAIN_CF):
            return self.postconf("-e", f"{name} = {value}")
        return self.postconf("-P", f"{source}/{name}={value}")

    def edit_main(self, changes: Sequence[tuple[str, str]]) -> list[str]:
        """One `postconf -e` for all of them: main.cf is rewritten once, all or nothing."""
        return self.postconf("-e", *(f"{name} = {value}" for name, value in changes))

    def unset(self, name: str, source: str = MAIN_CF) -> list[str]:
        if source in ("", MAIN_CF):
            return self.postconf("-X", name)
        return self.postconf("-PX", f"{source}/{name}")

    def fix(self, *commands: Sequence[str]) -> str:
        """Commands to run in order, then a reload so that running daemons see them."""
        lines = dict.fromkeys(line(c) for c in commands)  # in order, each once
        return " && ".join([*lines, line(self.reload())])

    def _instance(self) -> list[str]:
        return ["-c", self.config_dir] if self.config_dir else []


def line(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def folded(argv: Sequence[str], head: int) -> str:
    """A shell line with each argument after the first `head` on a continuation line of its own."""
    if len(argv) <= head + 1:
        return line(argv)
    rest = [f"    {shlex.quote(arg)}" for arg in argv[head:]]
    return " \\\n".join([line(argv[:head]), *rest])
