"""The lines of a report's input: files (plain or gzip, rotated sets in any order) or stdin. I/O.

A rotated set is read oldest first, whatever order it was named in
(``mail.log.2.gz``, ``mail.log.1``, ``mail.log``). Files of different sets
(Postfix's log and ours, kept apart) are merged by time as they are read, so
that a message's lines meet; each file is read once, line by line.
"""

from __future__ import annotations

import gzip
import heapq
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import TextIO

from reputable.errors import ReputableError
from reputable.report.logline import LineReader, LogLine

Sift = Callable[[list[str]], list[str]]  # the raw lines worth parsing, of a batch read
_ROTATED = re.compile(r"(?P<base>.*?)(?:[.-](?P<n>\d+))?(?P<gz>\.gz)?")


class UnreadableLog(ReputableError):
    """A log file that cannot be opened or read."""


def rotation(path: str) -> tuple[str, int]:
    """The set a file belongs to and its place in it: ``mail.log.2.gz`` → (``mail.log``, 2)."""
    found = _ROTATED.fullmatch(path)
    assert found is not None  # the pattern matches any text
    return found["base"], int(found["n"] or 0)


def _open(path: str) -> TextIO:
    try:
        if path == "-":
            return sys.stdin
        with Path(path).open("rb") as probe:
            magic = probe.read(2)
        if magic == b"\x1f\x8b":
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return Path(path).open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UnreadableLog(f"{path}: {exc.strerror or exc}") from None


BATCH_BYTES = 1 << 18  # lines are read and sifted this many bytes at a time


def _lines(path: str, now: datetime, keep: Sift) -> Iterator[LogLine]:
    handle = _open(path)
    read = LineReader(now).read
    try:
        while batch := handle.readlines(BATCH_BYTES):
            yield from map(read, keep(batch))
    except (OSError, EOFError) as exc:  # a truncated .gz
        raise UnreadableLog(f"{path}: {exc}") from None
    finally:
        if handle is not sys.stdin:
            handle.close()


def _every_line(lines: list[str]) -> list[str]:
    return lines


def read_lines(paths: Sequence[str], now: datetime, keep: Sift = _every_line) -> Iterable[LogLine]:
    """The lines of the named files ("-" or none: standard input), in the order written; only
    those `keep` keeps of each batch read (before they are parsed)."""
    if not paths:
        paths = ["-"]
    sets: dict[str, list[tuple[int, str]]] = {}
    for path in paths:
        base, number = rotation(path)
        sets.setdefault(base, []).append((number, path))
    streams = [
        chain.from_iterable(_lines(path, now, keep) for _, path in sorted(members, reverse=True))
        for members in sets.values()
    ]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=_when)


_EARLIEST = datetime.min


def _when(line: LogLine) -> datetime:
    """A line's place in the merge: its time (naive UTC); a line without one goes first."""
    if line.time is None:
        return _EARLIEST
    offset = line.time.utcoffset()
    naive = line.time.replace(tzinfo=None)
    return naive - offset if offset is not None else naive
