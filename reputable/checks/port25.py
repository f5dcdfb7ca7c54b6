"""Outbound port 25: can this host open an SMTP connection to a big receiver? I/O (query) and pure (interpret)."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from reputable.checks.findings import Finding, Status


@dataclass(frozen=True, slots=True)
class Port25Attempt:
    target: str  # "host:port"
    connected: bool
    error: str = ""
    elapsed_s: float = 0.0


def query_port25(target: str, timeout_s: float) -> Port25Attempt:
    host, _, port = target.rpartition(":")
    started = time.monotonic()
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return Port25Attempt(target, True, elapsed_s=time.monotonic() - started)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        return Port25Attempt(target, False, reason, time.monotonic() - started)


def interpret_port25(attempt: Port25Attempt) -> Finding:
    if attempt.connected:
        return Finding("port25", Status.OK, f"outbound connection to {attempt.target} works")
    fix = (
        "most residential and many cloud providers block outbound port 25: ask the provider to "
        "unblock it, or relay through a smarthost (Postfix relayhost) on port 587"
    )
    if "resolution" in attempt.error or "Name or service" in attempt.error:
        fix = "the target's name did not resolve: check DNS, or set [checks] port25_target"
    summary = f"cannot connect to {attempt.target}: {attempt.error}"
    return Finding("port25", Status.FAIL, summary, fix)
