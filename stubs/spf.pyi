# Local stubs for the parts of pyspf (module `spf`, 2.0.14) that reputable uses.
from typing import Any

MAX_LOOKUP: int
MAX_VOID_LOOKUPS: int

class TempError(Exception):
    msg: str
    mech: str | None
    def __init__(self, msg: str, mech: str | None = ..., ext: Any = ...) -> None: ...

class PermError(Exception):
    msg: str
    mech: str | None
    def __init__(self, msg: str, mech: str | None = ..., ext: Any = ...) -> None: ...

def DNSLookup(
    name: str, qtype: str, strict: bool | int = ..., timeout: float = ...
) -> list[tuple[tuple[str, str], Any]]: ...

class query:
    cache: dict[tuple[str, str], list[Any]]
    lookups: int
    void_lookups: int
    mechanism: str | None
    strict: bool | int
    def __init__(
        self,
        i: str,
        s: str,
        h: str,
        local: str | None = ...,
        receiver: str | None = ...,
        strict: bool | int = ...,
        timeout: float = ...,
        verbose: bool = ...,
        querytime: float = ...,
    ) -> None: ...
    def check(self, spf: str | None = ...) -> tuple[str, int, str]: ...
    def dns(
        self,
        name: str,
        qtype: str,
        cnames: dict[str, str] | None = ...,
        ignore_void: bool = ...,
    ) -> list[Any]: ...
