"""/metrics over HTTP, on the milter's own event loop. I/O.

A scrape is one short request: the server reads at most `MAX_REQUEST` bytes
of request head within `READ_TIMEOUT_S`, answers and closes, and serves at
most `MAX_CLIENTS` connections at once (more are closed at once). No thread,
no keep-alive: a slow or hostile local client costs one socket for a few
seconds and never delays a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from reputable.config import Config
from reputable.errors import ConfigError, Problem
from reputable.metrics import Metrics

MAX_REQUEST = 8192
READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
MAX_CLIENTS = 16
INDEX = b"reputable: the metrics are at /metrics\n"
# The text format every Prometheus reads (0.0.4); newer prometheus_client releases name a
# later version in their CONTENT_TYPE_LATEST, which Debian 12's Prometheus does not know.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def response(method: str, path: str, metrics: Metrics) -> bytes:
    """The whole HTTP/1.1 answer to one request line."""
    if method not in ("GET", "HEAD"):
        status, kind, body = "405 Method Not Allowed", "text/plain", b"GET /metrics\n"
    elif path == "/metrics":
        status, kind, body = "200 OK", CONTENT_TYPE, metrics.exposition()
    elif path == "/":
        status, kind, body = "200 OK", "text/plain; charset=utf-8", INDEX
    else:
        status, kind, body = "404 Not Found", "text/plain", b"not found: see /metrics\n"
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if method == "HEAD" else head + body


async def serve_metrics(config: Config, metrics: Metrics) -> asyncio.Server:
    """Listen on [metrics] listen; an address that cannot be had stops the start."""
    listen = config.metrics.listen
    assert listen is not None
    clients: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(clients) >= MAX_CLIENTS:
            writer.close()
            return
        clients.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            writer.write(response(method, target.split("?", 1)[0], metrics))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            ConnectionError,
        ):
            pass  # a broken or slow request gets nothing more than the closed connection
        finally:
            clients.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    host, port = listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return await asyncio.start_server(
            handle, host, port, family=family, limit=MAX_REQUEST, reuse_address=True
        )
    except OSError as exc:
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio words it at length
        allowed = f"a free address this user may listen on ({why})"
        problem = Problem(config.source, "metrics.listen", f'"{shown}"', allowed)
        raise ConfigError([problem]) from None
