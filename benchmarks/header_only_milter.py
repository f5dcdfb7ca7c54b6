"""A milter that does nothing but add one header field: the ceiling of any milter through Postfix.

It asks Postfix to skip every step it can (connect, HELO, MAIL, RCPT, DATA,
headers, end of headers, body) and answers only the option negotiation and
the end of the message, with one added field and "accept". No signature, no
checks, no log. Whatever it costs Postfix, every real milter costs at least
that; its throughput is the most any milter can reach on the machine, in the
same run (the issue's "a milter that does nothing but add one header").

Usage::

    python -m benchmarks.header_only_milter unix:/path/milter.sock
    python -m benchmarks.header_only_milter inet:8899@127.0.0.1
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from typing import cast

from reputable.milter import protocol as p
from reputable.milter.server import new_event_loop

HEADER = ("X-Bench", "header-only")
SKIPPED = (
    p.P_NOCONNECT
    | p.P_NOHELO
    | p.P_NOMAIL
    | p.P_NORCPT
    | p.P_NOHDRS
    | p.P_NOEOH
    | p.P_NOBODY
    | p.P_NOUNKNOWN
)
_ACCEPT = p.packet(p.R_ACCEPT)
_CONTINUE = p.packet(p.R_CONTINUE)
_END = p.add_header(*HEADER) + _ACCEPT
_SILENT = frozenset({p.MACRO, p.ABORT, p.QUIT_NC})


class HeaderOnly(asyncio.BufferedProtocol):
    def __init__(self, skipped: int) -> None:
        self.skipped = skipped
        self.reader = p.PacketReader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.space()

    def buffer_updated(self, nbytes: int) -> None:
        assert self.transport is not None
        self.reader.wrote(nbytes)
        out: list[bytes] = []
        while (item := self.reader.next()) is not None:
            command, data = item
            if command == p.OPTNEG:
                version, actions, protocol = p.parse_optneg(data)
                reply = p.optneg_reply(
                    min(version, p.VERSION), actions & p.ADDHDRS, protocol & self.skipped, {}
                )
                out.append(reply)
            elif command == p.BODYEOB:
                out.append(_END)
            elif command == p.QUIT:
                self.transport.close()
                break
            elif command not in _SILENT:
                out.append(_CONTINUE)  # a step the MTA sends although it was told to skip it
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out))


async def serve(address: str) -> None:
    loop = asyncio.get_running_loop()
    kind, _, rest = address.partition(":")
    if kind == "unix":
        if os.path.exists(rest):
            os.unlink(rest)
        server = await loop.create_unix_server(lambda: HeaderOnly(SKIPPED | p.P_NODATA), rest)
        os.chmod(rest, 0o666)
    else:
        # Over TCP, DATA is answered, as reputable does: Postfix then sends no lone macro
        # packet for Nagle's algorithm to hold.
        port, _, host = rest.partition("@")
        server = await loop.create_server(
            lambda: HeaderOnly(SKIPPED), host, int(port), reuse_address=True
        )
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
