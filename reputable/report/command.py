"""`reputable report [LOG ...]`: what was signed, held and answered, readable in ten seconds. I/O.

Lines outside the window (`--since`, `--from`, `--until`) are skipped as they
are read; a line without a time (``journalctl -o cat``) is always counted.
The exit code is the summary's: 0 nothing wrong, 1 warnings, 2 mail held or
refused by the gate, bounced for a reputation signal, or a host check failed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TextIO

from reputable.errors import ReputableError
from reputable.report.inputs import read_lines
from reputable.report.join import Joiner, lines_that_matter
from reputable.report.summary import Summary

_SINCE = re.compile(r"(\d+)\s*(m|h|d|w)")
_UNIT = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


class BadWindow(ReputableError):
    """A --since, --from or --until that cannot be read."""


def parse_since(text: str, now: datetime) -> datetime:
    found = _SINCE.fullmatch(text.strip())
    if found is None:
        raise BadWindow(f"--since {text!r}: expected a duration such as 30m, 24h, 7d or 2w")
    return now - int(found[1]) * _UNIT[found[2]]


def parse_moment(option: str, text: str, now: datetime) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadWindow(
            f"{option} {text!r}: expected a date or time such as 2026-12-03 or 2026-12-03T14:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=now.tzinfo)


def _within(time: datetime | None, begin: datetime | None, end: datetime | None) -> bool:
    """Whether a line is inside the window; a line without a time always is."""
    return time is None or not (
        (begin is not None and time < begin) or (end is not None and time > end)
    )


def report_command(
    paths: Sequence[str],
    since: str | None,
    start: str | None,
    until: str | None,
    as_json: bool,
    out: TextIO,
    now: datetime | None = None,
) -> int:
    now = now or datetime.now(UTC).astimezone()
    begin = parse_since(since, now) if since else None
    if start:
        begin = parse_moment("--from", start, now)
    end = parse_moment("--until", until, now) if until else None
    summary = Summary()
    joiner = Joiner(summary.add, summary.event)
    lines = read_lines(paths, now, lines_that_matter)
    if begin is not None or end is not None:
        lines = (line for line in lines if _within(line.time, begin, end))
    feed = joiner.feed
    for line in lines:
        feed(line)
    joiner.finish()
    if as_json:
        json.dump(summary.as_json(), out, indent=2)
        out.write("\n")
    else:
        out.write(render(summary))
    return summary.exit_code()


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "?"


def render(summary: Summary) -> str:
    """The report as text, in the order a person needs it."""
    lines = [
        f"{_when(summary.first)} to {_when(summary.last)}: {summary.total} messages, "
        f"{summary.signed} signed",
    ]
    if summary.unsigned:
        reasons = ", ".join(f"{reason} {n}" for reason, n in summary.unsigned.most_common())
        lines.append(f"  unsigned: {reasons}")
    if summary.actions:
        actions = ", ".join(f"{action} {n}" for action, n in summary.actions.most_common())
        lines.append(f"  actions: {actions}")
    if summary.inbound:
        lines.append("")
        lines.append(f"Inbound verification: {summary.inbound} messages")
        for method, counts in summary.inbound_results.items():
            if counts:
                results = ", ".join(f"{result} {n}" for result, n in counts.most_common())
                lines.append(f"  {method}: {results}")
    if summary.host_events:
        lines.append("")
        lines.append("Host events:")
        for event in summary.host_events:
            check = f" {event['check']}" if event["check"] else ""
            detail = f": {event['detail']}" if event["detail"] else ""
            lines.append(f"  {event['time']} {event['event']}{check}{detail}")
    if summary.deliveries:
        lines.append("")
        lines.append(f"{'Deliveries':<14}{'sent':>8}{'deferred':>10}{'bounced':>9}")
        for receiver, counts in sorted(summary.deliveries.items(), key=lambda i: str(i[0])):
            lines.append(
                f"  {receiver!s:<12}{counts['sent']:>8}{counts['deferred']:>10}"
                f"{counts['bounced']:>9}"
            )
    signals = summary.signals()
    if signals:
        lines.append("")
        lines.append("What receivers answered (worst first):")
        for group in signals:
            lines.append(
                f"  {group.receiver} {group.code or '-'} [{group.klass}] x{group.count} "
                f"({group.bounced} bounced), last {_when(group.last)}: {group.cause}"
            )
            if group.fix:
                lines.append(f"    fix: {group.fix}")
            lines.append(f"    e.g. {group.example}")
    verdict = {0: "nothing wrong", 1: "warnings", 2: "problems"}[summary.exit_code()]
    lines.append("")
    lines.append(f"Result: {verdict}.")
    return "\n".join(lines) + "\n"
