# Local stubs for the parts of pymilter's Milter package that reputable uses.
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

ACCEPT: int
CONTINUE: int
TEMPFAIL: int
REJECT: int
ADDHDRS: int
QUARANTINE: int
SETSYMLIST: int
ALL_OPTS: int
M_CONNECT: int
M_HELO: int
M_ENVFROM: int
M_ENVRCPT: int
M_DATA: int
M_EOM: int
M_EOH: int
P_HDR_LEADSPC: int
P_NODATA: int
P_NORCPT: int
P_NOHELO: int
P_NR_HDR: int
P_NR_BODY: int
NOREPLY: int

factory: Callable[[], Base]

def header_leading_space(klass: type[_T]) -> type[_T]: ...
def decode(strategy: str) -> Callable[[_T], _T]: ...
def noreply(func: _T) -> _T: ...
def connect_callback(ctx: Any, hostname: str, family: int, hostaddr: Any) -> int: ...
def close_callback(ctx: Any) -> int: ...
def negotiate_callback(ctx: Any, opts: list[int]) -> int: ...

class Base:
    _ctx: Any
    _protocol: int
    def __init__(self) -> None: ...
    def negotiate(self, opts: list[int]) -> int: ...
    def getsymval(self, sym: str) -> str | None: ...
    def setreply(self, rcode: str, xcode: str | None = ..., msg: str | None = ..., *ml: str) -> None: ...
    def addheader(self, field: str, value: str, idx: int = ...) -> None: ...
    def quarantine(self, reason: str) -> None: ...
    def envfrom_bytes(self, *b: bytes) -> int: ...
    def header_bytes(self, fld: str, val: bytes) -> int: ...
