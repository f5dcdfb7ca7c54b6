"""The reputation gate: which action the failing checks call for, and the words to say. Pure.

Every finding that gates mail maps to an `[actions]` key; the most severe
action wins (reject > tempfail > hold > flag > accept). In monitor mode the
action is only logged (`would_be`), and mail goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reputable.checks.findings import Finding, Outcome, Status
from reputable.config import SEVERITY, Action, ActionsConfig, Mode

MAX_REPLY = 400  # keep SMTP reply lines well under RFC 5321's 512 octets
WARNING_HEADER = "X-Reputable-Warning"
MAX_HEADER_LINE = 78  # RFC 5322 section 2.1.1: lines SHOULD be at most 78 characters


@dataclass(frozen=True, slots=True)
class GateDecision:
    action: Action  # what happens now
    would_be: Action | None  # monitor mode: what enforce mode would have done
    findings: tuple[Finding, ...]  # the findings that decided it (most severe first)
    acting: int = 0  # how many of them, from the first, call for an action (the rest only log)

    @property
    def failed_checks(self) -> str:
        return ",".join(f.id for f in self.findings)

    def reply(self, verb: str) -> str:
        """An SMTP reply text naming the failed check and the fix, e.g. for a 550."""
        if not self.findings:
            return ""
        first = self.findings[0]
        text = f"{first.summary}; {verb}"
        if first.fix:
            text += f"; fix: {first.fix}"
        if len(self.findings) > 1:
            text += f" (and {len(self.findings) - 1} more failed check(s))"
        return _smtp_safe(text)[:MAX_REPLY]

    @property
    def flagged_kinds(self) -> tuple[str, ...]:
        """The kinds of check (ptr, dnsbl, spf...) that decided the action, each once, in order."""
        acting = self.findings[: self.acting]
        return tuple(dict.fromkeys(f.id.split(".", 1)[0] for f in acting))

    def warning(self) -> str:
        """The X-Reputable-Warning header value: only the kinds of the failed checks, folded.

        Recipients see this header: no IP address, DNS error or advice goes into
        it (the log line has them, `detail`). Lines after the first begin with a
        space and are joined by "\n", as a milter hands Postfix a folded value.
        """
        return fold_list(WARNING_HEADER, [_smtp_safe(k) for k in self.flagged_kinds])

    def detail(self) -> str:
        """Every finding that decided it, with what was found: for our log line, never for mail."""
        return "; ".join(f"{f.id}: {f.summary}" for f in self.findings)


def fold_list(name: str, items: Sequence[str], width: int = MAX_HEADER_LINE) -> str:
    """`items` joined by ", " as the value of header `name`, folded before any line passes `width`.

    The first line holds "name: "; an item longer than a line stays whole on
    its own line (RFC 5322 allows up to 998 characters).
    """
    lines: list[str] = []
    current = ""
    used = len(name) + 2  # "name: "
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if current and used + len(current) + 1 + len(piece) > width:
            lines.append(current)
            current, used = piece, 1  # a continuation line starts with one space
        else:
            current = f"{current} {piece}" if current else piece
    lines.append(current)
    return "\n ".join(lines)


def _smtp_safe(text: str) -> str:
    # One line, printable ASCII, and no '%' (libmilter would take it as a format).
    clean = "".join(c if " " <= c <= "~" else "?" for c in text.replace("\n", " "))
    return clean.replace("%", "%%")


def action_for(finding: Finding, actions: ActionsConfig) -> Action:
    if finding.outcome is None or finding.status is Status.OK:
        return Action.ACCEPT
    action: Action = getattr(actions, finding.outcome.value)
    return action


def decide_gate(findings: Sequence[Finding], actions: ActionsConfig, mode: Mode) -> GateDecision:
    judged = [
        (action_for(f, actions), f)
        for f in findings
        if f.outcome is not None and f.status is not Status.OK
    ]
    acting = sorted(
        ((a, f) for a, f in judged if a is not Action.ACCEPT), key=lambda p: -SEVERITY[p[0]]
    )
    logged = [f for a, f in judged if a is Action.ACCEPT]
    action = acting[0][0] if acting else Action.ACCEPT
    decisive = tuple(f for _, f in acting) + tuple(logged)
    if mode is Mode.MONITOR:
        return GateDecision(
            Action.ACCEPT, action if action is not Action.ACCEPT else None, decisive, len(acting)
        )
    return GateDecision(action, None, decisive, len(acting))


def summary_fields(findings: Sequence[Finding]) -> dict[str, str]:
    """The per-message log fields: one word per check family (spf=pass ptr=ok dnsbl=clean dmarc=aligned)."""
    families: dict[str, list[Finding]] = {}
    for finding in findings:
        families.setdefault(finding.id.split(".", 1)[0], []).append(finding)
    words = {"dnsbl": ("clean", "listed"), "dmarc": ("aligned", "unaligned")}
    out: dict[str, str] = {}
    for family in ("spf", "ptr", "dnsbl", "dmarc", "dkim"):
        group = families.get(family)
        if not group:
            continue
        ok_word, fail_word = words.get(family, ("ok", "fail"))
        if any(f.outcome is Outcome.DNS_ERROR for f in group):
            out[family] = "error"
        elif any(f.status is Status.FAIL for f in group):
            out[family] = fail_word
        elif any(f.status is Status.WARN for f in group):
            out[family] = "warn"
        else:
            out[family] = ok_word
    return out
