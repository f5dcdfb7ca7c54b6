"""The exception root of reputable; subclasses carry the context a user needs to act. Pure."""

from __future__ import annotations

from dataclasses import dataclass

EX_USAGE = 64  # sysexits.h: the command was used wrongly
EX_CONFIG = 78  # sysexits.h: a configuration error


class ReputableError(Exception):
    """Every error reputable raises on purpose derives from this."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a configuration or key store, said so that it can be fixed."""

    source: str  # the file (or "<defaults>", "<environment>")
    key: str  # the config key or the key-store path
    value: str  # the offending value, as written
    allowed: str  # what would be accepted, or how to fix it

    def __str__(self) -> str:
        return f"{self.source}: {self.key} = {self.value}: {self.allowed}"


class ConfigError(ReputableError):
    """A configuration (or a key store it points to) that the daemon refuses to run with."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in problems))
