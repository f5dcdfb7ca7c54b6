"""The Postfix rows of `reputable check`: read Postfix, probe its milters, interpret. I/O.

No rows when Postfix is not installed (no postconf): reputable may run beside
another MTA. A Postfix that is installed but has no main.cf is said so once.
"""

from __future__ import annotations

from reputable.checks.findings import Finding, Status
from reputable.checks.postfix import interpret_postfix
from reputable.checks.postfix_sockets import socket_targets
from reputable.config import Config
from reputable.postfix.paths import view_postfix
from reputable.postfix.postconf import Postfix, PostfixError, PostfixMissing
from reputable.postfix.probe import probe


def postfix_findings(config: Config, postfix: Postfix | None = None) -> list[Finding]:
    postfix = postfix or Postfix()
    try:
        settings = postfix.read_settings()
    except PostfixMissing:
        return []
    except PostfixError as exc:
        return [unreadable(str(exc), postfix)]
    view = view_postfix(settings, config.milter.socket, postfix.commands)
    probes = {t.where: probe(t.endpoint, t.where) for t in socket_targets(view)}
    return interpret_postfix(view, config.signing.header_canonicalization, probes)


def unreadable(error: str, postfix: Postfix) -> Finding:
    if error.endswith("main.cf: No such file or directory"):
        summary = "Postfix is installed but not set up (no main.cf): nothing to check"
        return Finding("postfix.postconf", Status.OK, summary)
    shown = " ".join(postfix.commands.postconf("-n"))
    summary = f"could not read Postfix's settings ({error}): the Postfix rows could not run"
    return Finding("postfix.postconf", Status.WARN, summary, f"{shown} shows what Postfix says")
