"""Logging set-up and the logfmt/JSON line format; the one module that configures logging.

Log lines are the monitoring interface: field names are an API, defined in
`Field` and documented in the README. Callers log through `emit`, passing
fields as data, never by formatting strings.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from reputable.config import LogConfig, LogFormat
from reputable.errors import Problem

ROOT = "reputable"
SYSLOG_SOCKET = "/dev/log"
_FIELDS_ATTR = "reputable_fields"
_BARE = re.compile(r"^[A-Za-z0-9_.@:/+,\-\[\]]+$")


class Field(StrEnum):
    """Every field name a log line may carry."""

    EVENT = "event"
    QUEUE_ID = "queue_id"
    ACTION = "action"
    FROM_DOMAIN = "from_domain"
    DKIM = "dkim"
    REASON = "reason"
    CLIENT = "client"
    SOURCE = "source"
    MS = "ms"
    ERROR = "error"
    DETAIL = "detail"
    SOCKET = "socket"
    DOMAIN = "domain"
    SELECTOR = "selector"
    ALGORITHM = "algorithm"
    FILE = "file"
    FIX = "fix"
    VERSION = "version"
    KEYS = "keys"
    POSTFIX = "postfix"
    CHECK = "check"
    CHECKS = "checks"
    SPF = "spf"
    PTR = "ptr"
    DNSBL = "dnsbl"
    DMARC = "dmarc"
    WOULD_BE = "would_be"
    IPS = "ips"
    HELO = "helo"
    BITS = "bits"
    MODE = "mode"
    COMMAND = "command"
    STATE = "state"
    MAX_CONNECTIONS = "max_connections"
    REFUSED = "refused"
    DKIM_IN = "dkim_in"
    SPF_IN = "spf_in"
    DMARC_IN = "dmarc_in"
    ARC_IN = "arc_in"


def logger(subsystem: str) -> logging.Logger:
    """The logger of one subsystem (milter, keys, signing, config)."""
    return logging.getLogger(f"{ROOT}.{subsystem}")


def emit(
    log: logging.Logger, level: int, fields: Mapping[Field, object], *, exc_info: bool = False
) -> None:
    """Log one line made of fields (with the current exception's traceback if `exc_info`)."""
    if log.isEnabledFor(level):
        log.log(level, "", extra={_FIELDS_ATTR: fields}, exc_info=exc_info)


def emit_problems(log: logging.Logger, event: str, problems: Iterable[Problem]) -> None:
    """One error line per config or key problem: the file, what is wrong, and the fix."""
    for problem in problems:
        fields: dict[Field, object] = {
            Field.EVENT: event,
            Field.FILE: problem.source,
            Field.DETAIL: str(problem),
            Field.FIX: problem.allowed,
        }
        emit(log, logging.ERROR, fields)


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields a record was emitted with (for tests and handlers)."""
    fields: Mapping[Field, object] = getattr(record, _FIELDS_ATTR, {})
    return {str(k): v for k, v in fields.items()}


def format_value(value: object) -> str:
    """A logfmt value: bare when safe, else double-quoted with escapes."""
    text = value if isinstance(value, str) else str(value)
    if text and _BARE.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)
    return f'"{escaped}"'


def _record_fields(record: logging.LogRecord) -> dict[str, object]:
    out = {k: v for k, v in record_fields(record).items() if v is not None}
    message = record.getMessage()
    if message:
        out.setdefault(str(Field.DETAIL), message)
    if record.exc_info and record.exc_info[1] is not None:
        out.setdefault(str(Field.ERROR), repr(record.exc_info[1]))
    return out


class LogfmtFormatter(logging.Formatter):
    def __init__(self, *, timestamps: bool) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        head: list[str] = []
        if self.timestamps:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            head.append(f"ts={stamp}.{int(record.msecs):03d}Z")
        head.append(f"level={record.levelname.lower()}")
        head.append(f"logger={record.name.removeprefix(ROOT + '.')}")
        body = [f"{k}={format_value(v)}" for k, v in _record_fields(record).items()]
        return " ".join(head + body)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name.removeprefix(ROOT + "."),
        }
        data.update(_record_fields(record))
        return json.dumps(data, default=str, ensure_ascii=False)


# sd-daemon(3): a "<N>" prefix gives the journal each line's syslog priority.
_JOURNAL_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class JournalFormatter(logging.Formatter):
    """Lines for systemd's journal: its priority first, no time (the journal keeps its own)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_JOURNAL_PRIORITY.get(record.levelname, 6)}>{self.inner.format(record)}"


def stderr_is_journal(environ: Mapping[str, str] | None = None) -> bool:
    """Whether standard error is connected to the journal (systemd.exec(5), $JOURNAL_STREAM)."""
    expected = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return bool(expected) and expected == f"{info.st_dev}:{info.st_ino}"


def _formatter(config: LogConfig) -> logging.Formatter:
    journal = config.target == "stderr" and stderr_is_journal()
    inner: logging.Formatter
    if config.format is LogFormat.JSON:
        inner = JsonFormatter()
    else:
        inner = LogfmtFormatter(timestamps=config.target != "syslog" and not journal)
    return JournalFormatter(inner) if journal else inner


def _handler(target: str) -> logging.Handler:
    if target == "stderr":
        return logging.StreamHandler(sys.stderr)
    if target == "syslog":
        return logging.handlers.SysLogHandler(
            address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_MAIL
        )
    return logging.handlers.WatchedFileHandler(target)


def configure_logging(config: LogConfig) -> None:
    """Install the one handler of the `reputable` logger tree (replacing any earlier one)."""
    # No line shows the process, thread or multiprocessing names: don't look them up per record.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    logging._srcfile = None  # nor the caller's file and line (logging HOWTO, "Optimization")
    root = logging.getLogger(ROOT)
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler = _handler(config.target)
    handler.setFormatter(_formatter(config))
    root.addHandler(handler)
    root.setLevel(config.level.upper())
    root.propagate = False


_LOGFMT_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_LOGFMT_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|.)")


def parse_logfmt(line: str) -> dict[str, str]:
    """Read one logfmt line back into fields (for `report` and for tests)."""
    if '"' not in line and "\\" not in line:  # nothing quoted: the words are the fields
        return {
            key: value
            for key, equals, value in (word.partition("=") for word in line.split())
            if equals and key.isidentifier()
        }
    fields: dict[str, str] = {}
    for match in _LOGFMT_FIELD.finditer(line):
        key, raw = match[1], match[2]
        if raw.startswith('"'):
            raw = _LOGFMT_ESCAPE.sub(_unescape, raw[1:-1])
        fields[key] = raw
    return fields


def _unescape(match: re.Match[str]) -> str:
    code = match[1]
    if code.startswith("x") and len(code) == 3:
        return chr(int(code[1:], 16))
    return {"n": "\n", "r": "\r", "t": "\t"}.get(code, code)
