"""One MTA connection on the event loop: packets in, session callbacks, replies out. I/O.

The session (`reputable.milter.session.Session`, a pymilter ``Milter.Base``)
is driven as libmilter would drive it, through a `Context` that stands in for
libmilter's per-connection context. All connections share one thread, so a
callback never waits for the GIL or a lock held by another connection, and
the replies for everything read in one go leave in one write.

Every command passes the protocol's state table (`protocol.transitions`)
before any callback runs; one out of order, a length or a macro list over
the limits closes the connection with a `protocol_error` line, and the MTA
applies its milter_default_action.

A callback must not wait on the network in this thread. The one that may
(end of headers, when the gate's SPF or DMARC answer for a domain is not
cached) raises `WouldBlock` on the cache miss; it is then run again on a
worker thread, and this connection stops reading until it is answered, as it
does while the MTA does not read our replies: a peer that keeps sending then
fills its own socket buffer, not our memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import cast

import Milter

from reputable.log import Field, emit, logger
from reputable.milter import protocol as p
from reputable.milter.session import Session
from reputable.reputation import WouldBlock

_log = logger("milter")

# A reader's buffer that grew for a large packet is given back at once, but for body chunks,
# which follow one another: it is kept for them, and given back once the connection has read
# no large packet for this long (an idle connection holds 4 KiB).
SHRINK_AFTER_S = 1.0
_STREAMING = frozenset({p.State.EOH, p.State.BODY})
# What reputable may do to a message: add header fields, remove forged Authentication-Results,
# hold it, choose its macros.
ACTIONS = p.ADDHDRS | p.CHGHDRS | p.QUARANTINE | p.SETSYMLIST
# Without these an MTA would refuse every signature or hold (libmilter refuses it too); without
# SETSYMLIST it sends its default macros, which hold the ones used.
NEEDED_ACTIONS = p.ADDHDRS | p.QUARANTINE


class Context:
    """libmilter's per-connection context, as pymilter's ``Milter.Base`` calls it."""

    __slots__ = ("_priv", "macro_bytes", "macros", "modifications", "reply", "symlists")

    def __init__(self) -> None:
        self._priv: object = None
        # Per stage, its macro list as received ("name\0value\0..."); macro_bytes: their sum.
        self.macros: dict[int, bytes] = {}
        self.macro_bytes = 0
        self.symlists: dict[int, bytes] = {}
        self.reply: bytes | None = None  # an SMTP reply for the next REJECT/TEMPFAIL
        self.modifications: list[bytes] = []  # header changes and quarantine, sent at EOM

    def getpriv(self) -> object:
        return self._priv

    def setpriv(self, priv: object) -> None:
        self._priv = priv

    def getsymval(self, name: str) -> str | None:
        """A macro's value, from the latest stage that defined it ("x" and "{x}" are the same)."""
        key = name.encode("utf-8", "surrogateescape")
        other = key[1:-1] if key.startswith(b"{") and key.endswith(b"}") else b"{" + key + b"}"
        for stage in _LATEST_FIRST:
            macros = self.macros.get(stage)
            if macros:
                value = p.macro_value(macros, (key, other))
                if value is not None:
                    return value.decode("utf-8", "surrogateescape")
        return None

    def set_macros(self, stage: int, macros: bytes) -> None:
        """Macros of a stage (one of STAGE_ORDER) replace that stage's and forget the later ones."""
        self._forget_from(_POSITIONS[stage] + 1)
        total = self.macro_bytes + len(macros) - len(self.macros.get(stage, b""))
        if total > p.MAX_MACRO_BYTES:
            allowed = f"allowed {p.MAX_MACRO_BYTES} per connection"
            raise p.ProtocolError(f"{total} bytes of macros ({allowed})", "macro")
        self.macros[stage] = macros
        self.macro_bytes = total

    def forget_message_macros(self) -> None:
        self._forget_from(_POSITIONS[p.MAIL])

    def forget_macros(self) -> None:
        self._forget_from(0)

    def _forget_from(self, first: int) -> None:
        for stage in p.STAGE_ORDER[first:]:
            forgotten = self.macros.pop(stage, None)
            if forgotten is not None:
                self.macro_bytes -= len(forgotten)

    def setsymlist(self, stage: int, names: str | bytes) -> None:
        self.symlists[stage] = names.encode("ascii") if isinstance(names, str) else names

    def setreply(self, rcode: str, xcode: str | None, msg: str | None, *lines: str) -> None:
        self.reply = p.reply_code(rcode, xcode, [msg or "", *lines])

    def addheader(self, name: str, value: str, index: int = -1) -> None:
        if index < 0:
            self.modifications.append(p.add_header(name, value))
        else:
            self.modifications.append(p.insert_header(index, name, value))

    def chgheader(self, name: str, index: int, value: str) -> None:
        self.modifications.append(p.change_header(index, name, value))

    def quarantine(self, reason: str) -> None:
        self.modifications.append(p.quarantine(reason))


_POSITIONS = {stage: i for i, stage in enumerate(p.STAGE_ORDER)}
_LATEST_FIRST = tuple(reversed(p.STAGE_ORDER))


# The reply packet of each callback result (anything else is answered as a temporary failure).
_ANSWERS = {
    Milter.CONTINUE: p.packet(p.R_CONTINUE),
    Milter.ACCEPT: p.packet(p.R_ACCEPT),
    Milter.REJECT: p.packet(p.R_REJECT),
    Milter.TEMPFAIL: p.packet(p.R_TEMPFAIL),
    Milter.DISCARD: p.packet(p.R_DISCARD),
}
_STAGES = frozenset(p.STAGE_ORDER)
# The answers that end the message in progress, and where (at RCPT a rejection is the recipient's).
_ENDED_BY = {
    Milter.ACCEPT: p.MESSAGE_STATES,
    Milter.DISCARD: p.MESSAGE_STATES,
    Milter.REJECT: p.MESSAGE_STATES - {p.State.RCPT},
    Milter.TEMPFAIL: p.MESSAGE_STATES - {p.State.RCPT},
}


class MilterConnection(asyncio.BufferedProtocol):
    """The protocol state of one MTA connection; sessions follow each other over it."""

    def __init__(
        self,
        new_session: Callable[[], Session],
        executor: Executor,
        on_close: Callable[[MilterConnection], None] = lambda c: None,
        *,
        skip_data: bool = False,
    ) -> None:
        self.new_session = new_session
        self.skip_data = skip_data
        self.executor = executor
        self.on_close = on_close
        self.reader = p.PacketReader()
        self.ctx = Context()
        self.session: Session | None = None
        self.state = p.State.INIT
        self.table = p.transitions(0)
        self.negotiated: tuple[int, int] | None = None  # (actions, protocol)
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.out: list[bytes] = []
        self.waiting = False  # a callback runs on a worker thread; later packets wait
        self.unread = False  # the MTA does not read our replies (the transport's buffer is full)
        self.reading = True
        self.shrinking: asyncio.TimerHandle | None = None  # to give the reader's buffer back
        self.closed = False
        self.last_active = 0.0  # when the last whole packet arrived

    @property
    def in_message(self) -> bool:
        """Between MAIL FROM and the end of the message (or a callback still running)."""
        return self.waiting or self.state in p.MESSAGE_STATES

    # asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.loop = asyncio.get_running_loop()
        self.last_active = time.monotonic()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.space()

    def buffer_updated(self, nbytes: int) -> None:
        self.reader.wrote(nbytes)
        if not self.waiting:
            self.process()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.shrinking is not None:  # nothing keeps a closed connection alive
            self.shrinking.cancel()
            self.shrinking = None
        if not self.waiting:  # else the worker still uses the session: resume() ends it
            self.end_session()
        self.on_close(self)

    def pause_writing(self) -> None:
        self.unread = True
        self.follow_reading()

    def resume_writing(self) -> None:
        self.unread = False
        self.follow_reading()

    def follow_reading(self) -> None:
        """Read only while no lookup is pending and the MTA reads what we answer."""
        wanted = not (self.waiting or self.unread)
        if wanted != self.reading and not self.closed and self.transport is not None:
            self.reading = wanted
            if wanted:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    # Packets

    def process(self) -> None:
        """Answer every complete packet read so far, then send the answers in one write."""
        assert self.transport is not None
        handled = False
        try:
            while not self.waiting and not self.closed:
                item = self.reader.next()
                if item is None:
                    break
                handled = True
                self.dispatch(*item)
        except p.ProtocolError as exc:
            self.refuse(exc)
        except (Exception, WouldBlock) as exc:  # outside any message's boundary: the MTA retries
            # (WouldBlock here: a lookup in a step that is not run again on a worker.)
            emit(
                _log, logging.ERROR, {Field.EVENT: "error", Field.DETAIL: repr(exc)}, exc_info=True
            )
            self.abandon("internal_error", repr(exc))
        self.flush()
        if handled:  # a deadline per packet: a peer trickling bytes does not stay forever
            self.last_active = time.monotonic()  # not loop.time(): it costs a getpid()
        if self.reader.capacity != p.BUFFER:
            if self.state not in _STREAMING:
                self.reader.settle()
            elif self.shrinking is None and not self.closed:
                self.shrink_later()

    def shrink_later(self) -> None:
        assert self.loop is not None
        self.shrinking = self.loop.call_later(SHRINK_AFTER_S, self.shrink)

    def shrink(self) -> None:
        """Give the reader's large buffer back, or try again while it holds a large packet."""
        self.shrinking = None
        self.reader.settle()
        if self.reader.capacity != p.BUFFER and not self.closed:
            self.shrink_later()

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def refuse(self, exc: p.ProtocolError) -> None:
        fields: dict[Field, object] = {Field.COMMAND: exc.command, Field.STATE: exc.state}
        self.abandon("protocol_error", str(exc), fields)

    def abandon(self, event: str, detail: str, fields: dict[Field, object] | None = None) -> None:
        """Close the connection; the MTA applies its milter_default_action to the message."""
        emit(_log, logging.WARNING, {Field.EVENT: event, **(fields or {}), Field.DETAIL: detail})
        self.out.clear()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def dispatch(self, command: int, data: bytes) -> None:
        """Run one command, if it may follow the last one (libmilter's trans_ok)."""
        state = self.state
        step = self.table[state].get(command)
        if step is None:
            raise p.OutOfOrder(command, state)
        self.state = step[0]
        try:
            _HANDLERS[command](self, data)
        except p.ProtocolError as exc:  # a malformed packet: say which, and where it came
            exc.command = exc.command or p.command_name(command)
            exc.state = exc.state or state
            raise
        if step[1]:
            self.end_message()

    def on_body(self, data: bytes) -> None:
        self.finish(self.current().body(data))

    def on_header(self, data: bytes) -> None:
        name, value = p.parse_header(data)
        self.finish(self.current().header_bytes(name, value))

    def on_macro(self, data: bytes) -> None:
        if data and data[0] not in _STAGES:
            # Postfix repeats the end-of-header macros before every header and the
            # end-of-data ones before every body chunk; those copies are never read.
            return
        stage, macros = p.parse_macros(data)
        self.ctx.set_macros(stage, macros)

    def on_mail(self, data: bytes) -> None:
        self.finish(self.current().envfrom_bytes(*p.parse_envelope(p.MAIL, data)))

    def on_rcpt(self, data: bytes) -> None:
        self.finish(self.current().envrcpt_bytes(*p.parse_envelope(p.RCPT, data)))

    def on_data(self, data: bytes) -> None:
        self.finish(self.current().data())

    def on_connect(self, data: bytes) -> None:
        c = p.parse_connect(data)
        self.answer(self.current().connect(c.hostname, c.family, c.hostaddr))

    def on_helo(self, data: bytes) -> None:
        helo = p.strings(data) or [b""]
        self.answer(self.current().hello(helo[0].decode("utf-8", "surrogateescape")))

    def on_optneg(self, data: bytes) -> None:
        self.negotiate(*p.parse_optneg(data))

    def on_abort(self, data: bytes) -> None:
        pass  # the table marks it as the end of the message

    def on_quit(self, data: bytes) -> None:
        self.end_session()
        self.flush()
        self.closed = True
        assert self.transport is not None
        self.transport.close()

    def on_quit_new_connection(self, data: bytes) -> None:
        self.end_session()
        self.ctx.forget_macros()

    def on_unknown(self, data: bytes) -> None:
        self.answer(self.current().unknown(data.rstrip(b"\0").decode("utf-8", "replace")))

    def on_end_of_headers(self, data: bytes) -> None:
        session = self.current()
        try:
            self.finish(session.eoh())
        except WouldBlock:
            self.run_on_worker(session.eoh)

    def on_end_of_message(self, data: bytes) -> None:
        session = self.current()
        if data:
            code = session.body(data)
            if code not in (Milter.CONTINUE, Milter.NOREPLY):
                self.answer(code)
                return
        self.answer(session.eom())

    def end_message(self) -> None:
        """The message is over, however it ended: none of its macros may reach the next one."""
        self.ctx.forget_message_macros()
        if self.session is not None:
            self.session.abort()

    def negotiate(self, version: int, actions: int, protocol: int) -> None:
        if version < 2:
            raise p.ProtocolError(f"milter protocol version {version} (needs 2 or later)", "optneg")
        missing = NEEDED_ACTIONS & ~actions
        if missing:
            names = ", ".join(n for bit, n in p.ACTION_NAMES.items() if missing & bit)
            detail = f"the MTA allows actions {actions:#x}, without {names}, which reputable needs"
            raise p.ProtocolError(detail, "optneg")
        self.end_session()
        session = self.current()
        opts = [actions, protocol, 0, 0]
        if session.negotiate(opts) != Milter.CONTINUE:
            opts = [actions, 0, 0, 0]
        ours = actions & ACTIONS
        steps = opts[1] & protocol & p.KNOWN_STEPS
        if self.skip_data:
            steps |= protocol & p.P_NODATA
        session._actions = ours
        session._protocol = steps
        self.negotiated = (ours, steps)
        self.table = p.transitions(steps)
        symlists = self.ctx.symlists if ours & p.SETSYMLIST else {}
        self.out.append(p.optneg_reply(min(version, p.VERSION), ours, steps, symlists))

    def current(self) -> Session:
        """This connection's session, created at negotiation (again after QUIT_NC)."""
        if self.session is None:
            session = self.new_session()
            session._setctx(self.ctx)
            if self.negotiated is not None:
                session._actions, session._protocol = self.negotiated
            self.session = session
        return self.session

    def end_session(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            try:
                session.close()
            finally:
                session._setctx(None)

    # Replies

    def answer(self, code: int) -> None:
        ctx = self.ctx
        if code == Milter.NOREPLY:
            return
        if ctx.modifications:
            self.out.extend(ctx.modifications)
            ctx.modifications.clear()
        if code in (Milter.REJECT, Milter.TEMPFAIL) and ctx.reply is not None:
            self.out.append(ctx.reply)
        else:
            self.out.append(_ANSWERS.get(code, _ANSWERS[Milter.TEMPFAIL]))
        ctx.reply = None

    def finish(self, code: int) -> None:
        """Answer a step of the message; an answer that decides the message ends it here."""
        self.answer(code)
        if self.state in _ENDED_BY.get(code, ()):
            self.state = p.State.CONNECTED
            self.end_message()

    def run_on_worker(self, callback: Callable[[], int]) -> None:
        """Run a callback that must wait for DNS on a worker; this connection pauses meanwhile."""
        assert self.loop is not None
        self.waiting = True
        self.follow_reading()
        future = self.loop.run_in_executor(self.executor, callback)
        future.add_done_callback(self.resume)

    def resume(self, future: asyncio.Future[int]) -> None:
        self.waiting = False
        if self.closed:  # the MTA went away meanwhile
            self.end_session()
            return
        exc = future.exception()
        if exc is not None:
            emit(_log, logging.ERROR, {Field.EVENT: "error", Field.DETAIL: repr(exc)})
            self.abandon("internal_error", repr(exc))
            return
        self.follow_reading()
        self.last_active = time.monotonic()
        self.finish(future.result())
        self.process()


_HANDLERS: dict[int, Callable[[MilterConnection, bytes], None]] = {
    p.BODY: MilterConnection.on_body,
    p.HEADER: MilterConnection.on_header,
    p.MACRO: MilterConnection.on_macro,
    p.EOH: MilterConnection.on_end_of_headers,
    p.BODYEOB: MilterConnection.on_end_of_message,
    p.MAIL: MilterConnection.on_mail,
    p.RCPT: MilterConnection.on_rcpt,
    p.DATA: MilterConnection.on_data,
    p.CONNECT: MilterConnection.on_connect,
    p.HELO: MilterConnection.on_helo,
    p.OPTNEG: MilterConnection.on_optneg,
    p.ABORT: MilterConnection.on_abort,
    p.QUIT: MilterConnection.on_quit,
    p.QUIT_NC: MilterConnection.on_quit_new_connection,
    p.UNKNOWN: MilterConnection.on_unknown,
}
