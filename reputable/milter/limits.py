"""How many MTA connections the milter holds: the open-file limit, the cap, the refusals. I/O.

Every connection costs a file descriptor. Without a cap, a peer that opens
connections and holds them (any local user can reach a TCP socket) takes the
last descriptor: the MTA's next connection is reset by the kernel, DNS lookups
and the key watcher fail with EMFILE, and nothing says why. So the soft
open-file limit is raised to the hard one at start, a part of it is kept for
what is not a connection, and a connection past `[milter] max_connections` is
closed as soon as it is made: the MTA applies its milter_default_action at
once, and the log says so (one line per `REFUSAL_LOG_INTERVAL_S` at most).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable

from reputable.log import Field, emit, logger
from reputable.milter.lookups import MAX_THREADS

_log = logger("milter")
# Kept for what is not an MTA connection: a DNS socket per lookup thread, the background
# refresher's queries, the log file, key files being read, the listening socket, the loop's own.
RESERVED_FDS = 64 + MAX_THREADS
REFUSAL_LOG_INTERVAL_S = 10.0


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one, as far as the kernel allows; the soft
    limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # above fs.nr_open: keep what we have
            return soft
        return target
    return soft


def open_file_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def derived_max_connections(nofile: int) -> int:
    """max_connections = 0: the open-file limit less the reserve (half of it, on a small limit)."""
    return max(nofile - RESERVED_FDS, nofile // 2, 1)


class Refused(asyncio.Protocol):
    """A connection past max_connections: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class ConnectionCap:
    """Whether a new connection may be served, and the rate-limited line about those refused."""

    def __init__(self, derived: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.derived = derived
        self._clock = clock
        self._refused = 0  # since the last line
        self._limit = derived
        self._last_line = -REFUSAL_LOG_INTERVAL_S
        self._line_due = False

    def limit(self, configured: int) -> int:
        return configured or self.derived

    def admit(self, open_now: int, configured: int) -> bool:
        limit = configured or self.derived
        if open_now < limit:
            return True
        self._refused += 1
        self._limit = limit
        if not self._line_due:
            wait = self._last_line + REFUSAL_LOG_INTERVAL_S - self._clock()
            if wait <= 0:
                self.log_refused()
            else:  # the count so far goes out in one line when the interval is over
                self._line_due = True
                asyncio.get_running_loop().call_later(wait, self.log_refused)
        return False

    def log_refused(self) -> None:
        self._line_due = False
        if not self._refused:
            return
        fields: dict[Field, object] = {
            Field.EVENT: "connection_refused",
            Field.MAX_CONNECTIONS: self._limit,
            Field.REFUSED: self._refused,
            Field.DETAIL: "max_connections open: closed at once, "
            "the MTA applies its milter_default_action",
        }
        emit(_log, logging.WARNING, fields)
        self._refused = 0
        self._last_line = self._clock()
