"""Whether a milter socket answers, tried as Postfix does: by connecting to it. I/O.

The connection is closed before the milter protocol starts; a milter (reputable
included) takes that as a client that went away.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from enum import StrEnum

from reputable.postfix.milters import Endpoint, InetEndpoint

TIMEOUT_S = 2.0


class Reach(StrEnum):
    LISTENING = "listening"
    MISSING = "missing"  # no such file
    REFUSED = "refused"  # a file (a stale socket) or a port with no listener
    TIMEOUT = "timeout"
    DENIED = "denied"  # we may not look: not the answer Postfix gets
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Probe:
    reach: Reach
    detail: str = ""  # the error, as the system said it


_REACH = {
    errno.ENOENT: Reach.MISSING,
    errno.ENOTDIR: Reach.MISSING,
    errno.ECONNREFUSED: Reach.REFUSED,
    errno.EACCES: Reach.DENIED,
    errno.EPERM: Reach.DENIED,
}


def probe(endpoint: Endpoint, where: str, timeout_s: float = TIMEOUT_S) -> Probe:
    """Connect to `where`: the path a Postfix daemon opens, or the endpoint's host and port."""
    if not isinstance(endpoint, InetEndpoint):
        try:
            os.stat(where)  # first: a missing file is missing even where the path is too long
        except OSError as exc:
            return Probe(_REACH.get(exc.errno or 0, Reach.ERROR), exc.strerror or str(exc))
        return _connect(socket.AF_UNIX, where, timeout_s)
    try:
        found = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return Probe(Reach.ERROR, str(exc))
    tried = Probe(Reach.ERROR, "no address")
    for family, _, _, _, address in found:  # Postfix, too, tries each address of a name
        tried = _connect(family, address, timeout_s)
        if tried.reach is Reach.LISTENING:
            break
    return tried


def _connect(family: int, target: object, timeout_s: float) -> Probe:
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        try:
            client.connect(target)  # type: ignore[arg-type]
        except TimeoutError:
            return Probe(Reach.TIMEOUT, f"no answer in {timeout_s:g}s")
        except OSError as exc:
            return Probe(_REACH.get(exc.errno or 0, Reach.ERROR), exc.strerror or str(exc))
    return Probe(Reach.LISTENING)
