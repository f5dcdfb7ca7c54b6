"""systemd's service notification protocol (sd_notify(3)), written out in a few lines. I/O.

A `Type=notify` service tells systemd that it is ready, reloading or
stopping by sending newline-separated `NAME=value` assignments in one
datagram to the unix socket named by `$NOTIFY_SOCKET` (a path, or an
abstract address written with a leading "@"). Without that variable, as
under `make run`, every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

READY = "READY=1"
RELOADING = "RELOADING=1"
STOPPING = "STOPPING=1"


def monotonic_usec() -> str:
    """The assignment systemd ≥ 253 wants beside RELOADING=1 (CLOCK_MONOTONIC in µs)."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def status(text: str) -> str:
    """A one-line STATUS= (what `systemctl status` shows); newlines would end the assignment."""
    return "STATUS=" + " ".join(text.split())


def notify(*assignments: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send the assignments to systemd; False when not run by systemd or the send failed.

    A failure is not worth stopping mail for: systemd then acts on its own
    timeouts, which is what it would do if we had said nothing.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    elif not address.startswith("/"):
        return False  # unset, or a vsock address (virtual machines): not used for services
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode())
    except OSError:
        return False
    return True
