"""`reputable sign`: the milter's signing as a stdin→stdout filter (Exim's transport_filter).

The caller (the MTA) vouches that the message is outbound; the same policy
still decides whether its author domain is signed and with which keys. A
message that must not be signed is written out unchanged.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, TextIO

from reputable.config import Config, LogConfig
from reputable.log import SYSLOG_SOCKET, logger
from reputable.message_line import Decided, record
from reputable.policy import Source, decide
from reputable.runtime import load_runtime
from reputable.signing.rawmessage import MessageFormatError, parse_message
from reputable.signing.signer import MessageSigner

_log = logger("sign")
EX_DATAERR = 65


def filter_log(log: LogConfig) -> LogConfig:
    """Where `sign` logs: as configured, unless standard error is the message's own stream.

    Exim gives a transport filter's standard error the same pipe as its
    standard output: a log line there would become a line of the message
    (and break its signature). Then the line goes to syslog (facility mail),
    or nowhere on a host without /dev/log.
    """
    if log.target != "stderr" or not _stderr_is_stdout():
        return log
    return replace(log, target="syslog" if Path(SYSLOG_SOCKET).exists() else "/dev/null")


def _stderr_is_stdout() -> bool:
    try:
        out, err = os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino) and not os.isatty(2)


def sign_stream(config: Config, source: BinaryIO, sink: BinaryIO, err: TextIO) -> int:
    runtime = load_runtime(config)
    started = time.perf_counter()
    data = source.read()
    try:
        message = parse_message(data)
    except MessageFormatError as exc:
        print(f"reputable sign: not a mail message: {exc}", file=err)
        return EX_DATAERR
    from_values = [f.value for f in message.fields if f.key == b"from"]
    verdict = decide(Source.FILTER, from_values, runtime.domains, runtime.keyring)
    added = b""
    if verdict.keys:
        signer = MessageSigner(verdict.keys, runtime.policy)
        for field in message.fields:
            signer.header(field)
        signer.body(message.body)
        for signature in signer.signatures(int(time.time())):
            line = signature.name + b":" + signature.value + b"\r\n"
            added += line.replace(b"\r\n", message.line_ending)
    sink.write(added)
    sink.write(data)
    sink.flush()
    decided = Decided(None, "accept", verdict.source, verdict)
    record(_log, None, decided, time.perf_counter() - started)
    return 0
