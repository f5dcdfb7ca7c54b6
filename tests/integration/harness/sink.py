"""An SMTP sink for the integration tests: the final destination of relayed mail.

It is an aiosmtpd server on 127.0.0.1 (ephemeral port) whose asyncio loop runs
in a background thread.  Every message is kept exactly as received: envelope
sender, recipients, ESMTP parameters and the DATA bytes (dot-unstuffed, CRLF
line endings as sent, nothing decoded or re-folded).  Lines are accepted up
to the whole size limit, so over-long lines arrive as sent instead of being
refused.

Tests wait for mail with :meth:`SmtpSink.wait_for` and pick a message with
:meth:`SmtpSink.find` (by a header value such as Message-ID or Subject); the
reply to DATA can be changed with :meth:`SmtpSink.set_reply` to make the
relaying MTA defer or bounce.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiosmtpd.smtp import SMTP

from .service import Service

DEFAULT_SIZE_LIMIT = 128 * 1024 * 1024
"""Largest message the sink accepts (bytes)."""


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the sink received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    """The message exactly as sent after DATA (dot-unstuffed, CRLF as sent)."""
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()
    peer: tuple[str, int] = ("", 0)
    helo: str = ""
    received_at: float = 0.0
    headers: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    """The header fields as ``(name, unfolded value)``, in order (see :func:`parse_headers`)."""

    @property
    def header_bytes(self) -> bytes:
        """The header block, up to and including the empty line."""
        end = _header_end(self.data)
        return self.data[:end]

    @property
    def body(self) -> bytes:
        """The body: everything after the empty line ending the header."""
        return self.data[_header_end(self.data) :]

    def header(self, name: str) -> str | None:
        """The first value of header *name* (case-insensitive), unfolded; None if absent."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of header *name*, in order, unfolded and stripped."""
        wanted = name.lower()
        return [v for n, v in self.headers if n.lower() == wanted]


def _header_end(data: bytes) -> int:
    """The offset just after the blank line ending the header block (len(data) if none)."""
    if data.startswith((b"\r\n", b"\n")):
        return 2 if data.startswith(b"\r\n") else 1
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    candidates = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(candidates) if candidates else len(data)


def parse_headers(data: bytes) -> tuple[tuple[str, str], ...]:
    """Header fields of a raw message as ``(name, value)``: unfolded, whitespace-stripped.

    Decoding is UTF-8 with surrogateescape, so 8-bit headers survive.
    """
    block = data[: _header_end(data)].decode("utf-8", "surrogateescape")
    fields: list[tuple[str, str]] = []
    for line in block.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line[0] in " \t" and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))
    return tuple(fields)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        reply = self._sink.reply
        if reply.startswith("250"):
            data: bytes = envelope.original_content or b""
            peer = session.peer if isinstance(session.peer, tuple) else ("", 0)
            self._sink._add(
                ReceivedMessage(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=tuple(str(r) for r in envelope.rcpt_tos),
                    data=data,
                    mail_options=tuple(str(o) for o in envelope.mail_options),
                    rcpt_options=tuple(str(o) for o in envelope.rcpt_options),
                    peer=(str(peer[0]), int(peer[1])),
                    helo=str(session.host_name or ""),
                    received_at=time.time(),
                    headers=parse_headers(data),
                )
            )
        return reply


class _SinkSMTP(SMTP):
    # Accept lines as long as the whole message may be: the sink records, it does not judge.
    line_length_limit = DEFAULT_SIZE_LIMIT


class SmtpSink(Service):
    """An SMTP server on loopback that keeps every message it is given."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hostname: str = "sink.example.net",
        size_limit: int = DEFAULT_SIZE_LIMIT,
    ) -> None:
        self._host = host
        self._port = port
        self._hostname = hostname
        self._size_limit = size_limit
        self._messages: list[ReceivedMessage] = []
        self._cond = threading.Condition()
        self._reply = "250 2.0.0 Ok: kept by the test sink"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    # ------------------------------------------------------------------ life

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("SmtpSink is not started")
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("SmtpSink already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        sock.listen(64)
        sock.setblocking(False)
        self._address = (self._host, int(sock.getsockname()[1]))
        loop = asyncio.new_event_loop()
        self._loop = loop
        handler = _Handler(self)
        ready = threading.Event()
        failure: list[BaseException] = []

        def factory() -> SMTP:
            return _SinkSMTP(
                handler,
                hostname=self._hostname,
                data_size_limit=self._size_limit,
                enable_SMTPUTF8=True,
                decode_data=False,
                loop=loop,
            )

        async def serve() -> None:
            self._server = await loop.create_server(factory, sock=sock)

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as e:
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            # Stopped: close the server and cancel what is left, then the loop.
            if self._server is not None:
                self._server.close()
                loop.run_until_complete(self._server.wait_closed())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="SmtpSink", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            self.stop()
            raise RuntimeError(f"SmtpSink did not start: {failure[0] if failure else 'timeout'}")
        wait_for_banner(self._address, timeout)
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None
        self._server = None

    # -------------------------------------------------------------- behaviour

    @property
    def reply(self) -> str:
        with self._cond:
            return self._reply

    def set_reply(self, reply: str | None = None) -> None:
        """The reply to DATA, e.g. ``"451 4.3.0 try again"``; None restores 250 (keep)."""
        with self._cond:
            self._reply = reply or "250 2.0.0 Ok: kept by the test sink"

    # --------------------------------------------------------------- messages

    def _add(self, message: ReceivedMessage) -> None:
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A copy of the messages received so far, oldest first."""
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def wait_for(self, count: int = 1, timeout: float = 20.0) -> list[ReceivedMessage]:
        """Block until at least *count* messages arrived; return them all.

        Raises TimeoutError (saying how many did arrive) at the deadline.
        """
        return self._wait(lambda msgs: len(msgs) >= count, timeout, f"{count} message(s)")

    def find(self, header: str, value: str) -> ReceivedMessage | None:
        """The first message whose *header* has exactly *value* (stripped), or None."""
        wanted = value.strip()
        for message in self.messages:
            if wanted in message.header_values(header):
                return message
        return None

    def wait_for_header(self, header: str, value: str, timeout: float = 20.0) -> ReceivedMessage:
        """Block until a message with *header* equal to *value* arrives, and return it."""
        wanted = value.strip()

        def match(msgs: list[ReceivedMessage]) -> bool:
            return any(wanted in m.header_values(header) for m in msgs)

        self._wait(match, timeout, f"a message with {header}: {value}")
        found = self.find(header, value)
        assert found is not None
        return found

    def _wait(
        self,
        done: Callable[[list[ReceivedMessage]], bool],
        timeout: float,
        what: str,
    ) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done(self._messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"SmtpSink did not receive {what} within {timeout}s "
                        f"(has {len(self._messages)})"
                    )
                self._cond.wait(remaining)
            return list(self._messages)


def wait_for_banner(address: tuple[str, int], timeout: float = 10.0) -> bytes:
    """Poll *address* until it accepts a TCP connection and sends a 220 banner.

    Returns the banner line; raises TimeoutError with the last error at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: str = "no attempt"
    delay = 0.01
    while True:
        try:
            with socket.create_connection(
                address, timeout=max(0.1, deadline - time.monotonic())
            ) as s:
                banner = b""
                while not banner.endswith(b"\n"):
                    chunk = s.recv(1024)
                    if not chunk:
                        break
                    banner += chunk
                if banner.startswith(b"220"):
                    with contextlib.suppress(OSError):
                        s.sendall(b"QUIT\r\n")
                    return banner.strip()
                last = f"unexpected banner {banner!r}"
        except OSError as e:
            last = str(e)
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"no SMTP banner from {address[0]}:{address[1]} in {timeout}s: {last}"
            )
        # Poll again soon; back off a little so a slow start does not spin.
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
