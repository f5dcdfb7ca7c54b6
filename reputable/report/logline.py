"""One line of a mail log, whatever wrote it: its time, the program, the text. Pure.

The shapes read (one file may mix them, as a log rotated across a change can):

* traditional syslog, ``Dec  3 14:05:01 host postfix/smtp[123]: text`` (the
  year is not written: the latest one that does not put the line in the
  future);
* Postfix's own ``maillog_file``, the same with a zero-padded day
  (``Dec 03``), and either with fractional seconds;
* ISO 8601 / RFC 3339 stamps (rsyslog's high-precision format,
  ``journalctl -o short-iso``): ``2026-12-03T14:05:01.123+00:00 host prog[1]: text``;
* RFC 5424: ``<22>1 2026-12-03T14:05:01Z host postfix/smtp 123 - - text``;
* ``journalctl -o cat``: the text alone (no time, no program).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_TRADITIONAL = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
    r"(?:\.(?P<frac>\d{1,6})\d*)? (?P<host>\S+) (?P<rest>.*)"
)
_ISO = re.compile(
    r"(?P<stamp>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) "
    r"(?P<host>\S+) (?P<rest>.*)"
)
_RFC5424 = re.compile(
    r"<\d{1,3}>1 (?P<stamp>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) \S+ "
    r"(?:-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(?P<text>.*)"
)
# reputable's own lines written to a file: logfmt "ts=... level=..." or JSON {"ts": "...", ...}.
_OWN_STAMP = re.compile(r'(?:ts=|\{"ts": ")(?P<stamp>\d{4}-\d\d-\d\dT[0-9:.]+Z)[ "]')
# What precedes the first ": " after the host: the program and its pid.
_PROGRAM_TOKEN = re.compile(r"(?P<program>[A-Za-z0-9_./-]+)(?:\[(?P<pid>\d+)\])?")
_TRADITIONAL_STAMP = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)(?P<frac>)"
)
# A line more than this far ahead of "now" belongs to the year before (a rotated log read in
# January); syslog hosts' clocks may run a little ahead.
_FUTURE_SLACK = timedelta(days=1)


class LogLine(NamedTuple):
    time: datetime | None  # aware; None when the line carries none (journalctl -o cat)
    program: str  # "postfix/smtp", "reputable"; "" when the line does not say
    text: str  # what the program wrote


class LineReader:
    """Reads the lines of one log: `now` (aware) places a year-less stamp, `local` is the
    zone such stamps are in (default: `now`'s). The lines of a log share their stamps, so a
    stamp is read once per second of log, not once per line."""

    __slots__ = ("_minutes", "_stamp", "_time", "local", "now")

    def __init__(self, now: datetime, local: tzinfo | None = None) -> None:
        self.now = now
        self.local = local
        self._stamp = ""
        self._time: datetime | None = _NOT_A_STAMP
        self._minutes: dict[str, datetime | None] = {}  # "Dec  3 14:05" -> its time

    def read(self, line: str) -> LogLine:
        """The line's parts; a line of no known shape is all text (never an error)."""
        line = line.rstrip("\r\n")
        # The common case first, without a regular expression over the whole line: a
        # traditional stamp of whole seconds, "Dec  3 14:05:01 host ...".
        if len(line) > 16 and line[15] == " " and line[12] == ":" and line[3] == " ":
            stamp = line[:15]
            if stamp != self._stamp:
                self._stamp = stamp
                self._time = self._stamp_time(stamp)
            host_end = line.find(" ", 16)
            if self._time is not _NOT_A_STAMP and host_end > 16:
                return _with_program(self._time, line[host_end + 1 :])
        return _other_shapes(line, self.now, self.local)

    def _stamp_time(self, stamp: str) -> datetime | None:
        """A whole-second stamp's time: its minute read once (a busy log writes many lines a
        minute, and most seconds but a few), its second added to that."""
        minute = self._minutes.get(stamp[:12], _NOT_A_STAMP)
        if minute is _NOT_A_STAMP:
            found = _TRADITIONAL_STAMP.fullmatch(stamp[:12] + ":00")
            minute = _NOT_A_STAMP
            if found is not None and stamp[13:15].isdigit():
                minute = _traditional_time(found, self.now, self.local)
            if len(self._minutes) > 1024:
                self._minutes.clear()
            self._minutes[stamp[:12]] = minute
        if minute is None or minute is _NOT_A_STAMP:
            return minute
        second = int(stamp[13:15])
        return minute.replace(second=second) if second < 60 else None


def parse_line(line: str, now: datetime, local: tzinfo | None = None) -> LogLine:
    """One line on its own (`LineReader` reads a log's lines)."""
    return LineReader(now, local).read(line)


_NOT_A_STAMP = datetime.min.replace(tzinfo=UTC)  # "not this shape": try the others


def _other_shapes(line: str, now: datetime, local: tzinfo | None) -> LogLine:
    if line.startswith("<"):
        found = _RFC5424.fullmatch(line)
        if found is not None:
            app = found["app"] if found["app"] != "-" else ""
            return LogLine(_iso_time(found["stamp"], now), app, found["text"])
    found = _TRADITIONAL.fullmatch(line)
    if found is not None:
        return _with_program(_traditional_time(found, now, local), found["rest"])
    found = _ISO.fullmatch(line)
    if found is not None:
        return _with_program(_iso_time(found["stamp"], now), found["rest"])
    found = _OWN_STAMP.match(line)  # our own log file: the time is a field of the line
    if found is not None:
        return LogLine(_iso_time(found["stamp"], now), "", line)
    return _with_program(None, line)


def _with_program(time: datetime | None, rest: str) -> LogLine:
    colon = rest.find(": ")
    found = _PROGRAM_TOKEN.fullmatch(rest, 0, colon) if colon > 0 else None
    if found is None:
        return LogLine(time, "", rest)
    if time is None and found["pid"] is None and "/" not in found["program"]:
        # No stamp, so no syslog header: "994572305BB: to=..." (journalctl -o cat) is text.
        return LogLine(None, "", rest)
    return LogLine(time, found["program"], rest[colon + 2 :])


def _traditional_time(found: re.Match[str], now: datetime, local: tzinfo | None) -> datetime | None:
    zone = local or now.tzinfo or UTC
    micro = int((found["frac"] or "0").ljust(6, "0"))
    try:
        stamp = datetime(
            now.year,
            _MONTHS[found["mon"]],
            int(found["day"]),
            int(found["h"]),
            int(found["m"]),
            int(found["s"]),
            micro,
            tzinfo=zone,
        )
    except (KeyError, ValueError):  # "Feb 29" of a year without one, a month of no name
        return None
    if stamp - now > _FUTURE_SLACK:
        try:
            stamp = stamp.replace(year=now.year - 1)
        except ValueError:
            return None
    return stamp


def _iso_time(stamp: str, now: datetime) -> datetime | None:
    text = stamp.replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"  # journalctl's +0000
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=now.tzinfo or UTC)
