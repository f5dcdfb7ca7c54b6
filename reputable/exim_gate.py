"""The reputation gate for Exim: one query a connection on a unix socket, from Exim's ACL. I/O.

Exim has no milter interface; its ACLs ask a socket with ``${readsocket}``.
The query is one line, the ACL's facts each base64-encoded (Exim's
``${str2b64:...}``), so that no value needs escaping::

    v1 CLIENT AUTH MAILFROM FROM ID

(the client's IP address, empty for a local submission; the authenticated
user; the envelope sender; the From header field as received; Exim's message
id). The answer is one line, the ACL's verb first:

    accept | flag <header text> | hold <text> | defer <text> | deny <text>

A query that cannot be read is answered ``defer`` (and logged): mail waits,
it is never passed unjudged. The same checks, actions, snapshot and caches
as the milter, and one log line per query with the milter's fields.
Exim closes its side after the query; an idle or endless connection is
closed after `READ_TIMEOUT_S` or `MAX_LINE` bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import grp
import ipaddress
import logging
import os
import stat
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from reputable.config import Action, Config
from reputable.errors import ConfigError, Problem
from reputable.gate import GateDecision, decide_gate
from reputable.log import Field, emit, logger
from reputable.message_line import Decided, record
from reputable.policy import Envelope, Source, classify_source, decide
from reputable.runtime import RuntimeHolder

_log = logger("exim")
PROTOCOL = "v1"
MAX_LINE = 16384
READ_TIMEOUT_S = 10.0


class BadQuery(ValueError):
    """A query line that is not `v1` and five base64 fields."""


@dataclass(frozen=True, slots=True)
class Query:
    client: str  # "" for a local submission
    auth_user: str
    mail_from: str
    from_header: str
    message_id: str


def parse_query(line: bytes) -> Query:
    words = line.strip(b"\r\n").split(b" ")
    if len(words) != 6 or words[0] != PROTOCOL.encode():
        raise BadQuery(f"expected {PROTOCOL} and five base64 fields, got {len(words)} words")
    try:
        values = [base64.b64decode(w, validate=True).decode("utf-8", "replace") for w in words[1:]]
    except binascii.Error:
        raise BadQuery("a field is not base64") from None
    return Query(*values)


def _one_line(text: str) -> str:
    """An answer's text on one line of printable ASCII (Exim reads the line as it comes)."""
    return "".join(c if " " <= c <= "~" else " " for c in text).strip()


def judge(holder: RuntimeHolder, query: Query) -> str:
    """The answer to one query, and its log line (on a worker: it may wait on DNS)."""
    started = time.perf_counter()
    runtime = holder.current
    config = runtime.config
    client = None
    with contextlib.suppress(ValueError):
        client = ipaddress.ip_address(query.client) if query.client else None
    envelope = Envelope(client, query.auth_user or None, local_submission=not query.client)
    source = classify_source(envelope, config.trust)
    verdict = decide(source, [query.from_header.encode()], runtime.domains, runtime.keyring)
    answer, facts, gate = "accept", None, None
    reputation = holder.reputation
    if verdict.source is not Source.EXTERNAL and reputation is not None:
        mail_from_domain = (
            query.mail_from.rpartition("@")[2].lower() if "@" in query.mail_from else ""
        )
        facts = reputation.facts(mail_from_domain, verdict.from_domain, verdict.keys)
        gate = decide_gate(facts.findings, config.actions, config.milter.mode)
        answer = _answer(gate.action, gate)
    action = gate.action.value if gate is not None else "accept"
    decided = Decided(
        query.message_id or "-",
        action,
        verdict.source,
        verdict,
        query.client or "local",
        facts=facts,
        gate=gate,
    )
    record(_log, holder.metrics, decided, time.perf_counter() - started)
    return answer


def _answer(action: Action, gate: GateDecision) -> str:
    match action:
        case Action.REJECT:
            return "deny " + _one_line(gate.reply("mail refused"))
        case Action.TEMPFAIL:
            return "defer " + _one_line(gate.reply("try again later"))
        case Action.HOLD:
            return "hold " + _one_line(gate.reply("held"))
        case Action.FLAG:
            return "flag " + _one_line(gate.warning())
    return "accept"


async def serve_exim(config: Config, holder: RuntimeHolder, executor: Executor) -> asyncio.Server:
    """Listen on [exim] socket; a path that cannot be had stops the start."""
    path = config.exim.socket
    assert path is not None
    loop = asyncio.get_running_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
            try:
                query = parse_query(line)
            except BadQuery as exc:
                fields = {Field.EVENT: "protocol_error", Field.DETAIL: f"exim query: {exc}"}
                emit(_log, logging.WARNING, fields)
                answer = "defer reputable could not read the query"
            else:
                answer = await loop.run_in_executor(executor, judge, holder, query)
            writer.write(answer.encode("ascii") + b"\n")
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except (TimeoutError, ValueError, ConnectionError, asyncio.LimitOverrunError):
            pass  # too slow, too long or gone: closed, nothing answered (the ACL defers)
        except Exception:  # a bug: logged; Exim's ACL defers on the closed socket
            emit(_log, logging.ERROR, {Field.EVENT: "internal_error"}, exc_info=True)
        finally:
            writer.close()

    remove_socket(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        server = await asyncio.start_unix_server(handle, path=str(path), limit=MAX_LINE)
        gid = grp.getgrnam(config.exim.socket_group).gr_gid if config.exim.socket_group else -1
        os.chown(path, -1, gid)
        os.chmod(path, config.exim.socket_mode)
    except KeyError:
        problem = Problem(
            config.source, "exim.socket_group", f'"{config.exim.socket_group}"', "an existing group"
        )
        raise ConfigError([problem]) from None
    except OSError as exc:
        allowed = f"a path this user may make a socket at ({exc.strerror or exc})"
        raise ConfigError([Problem(config.source, "exim.socket", f'"{path}"', allowed)]) from None
    return server


def remove_socket(path: Path) -> None:
    """Our socket at stop, or one left by a run that did not stop cleanly; never a file of
    another kind."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
