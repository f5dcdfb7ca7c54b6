"""Run the milter: listen, serve connections on one event loop, reload on SIGHUP, stop on SIGTERM.

Every connection is served by `reputable.milter.connection` on one asyncio
loop in the main thread: no thread per connection, so no callback waits for
the GIL behind another connection's. Lookups that must wait for DNS run on
worker threads (`reputable.milter.lookups`, queued fairly by domain). At most
[milter] max_connections are served (`reputable.milter.limits`). SIGHUP reloads config and keys into a new
Runtime (sessions in flight finish with the one they started with);
SIGTERM/SIGINT stop accepting, let open sessions finish, and return.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

import uvloop

from reputable import __version__
from reputable.config import Config, MilterSocket
from reputable.errors import ConfigError, Problem
from reputable.exim_gate import remove_socket as remove_exim_socket
from reputable.exim_gate import serve_exim
from reputable.host import postconf
from reputable.inbound.lookups import InboundLookups
from reputable.keys.record import record_value, zone_file_line
from reputable.keywatch import KeyWatcher
from reputable.log import Field, configure_logging, emit, emit_problems, logger
from reputable.metrics import Metrics
from reputable.metrics_http import serve_metrics
from reputable.milter.connection import MilterConnection
from reputable.milter.limits import (
    ConnectionCap,
    Refused,
    derived_max_connections,
    open_file_limit,
    raise_fd_limit,
)
from reputable.milter.lookups import LookupPool
from reputable.milter.session import Session
from reputable.milter.unixsocket import open_unix, remove_socket
from reputable.notify import READY, RELOADING, STOPPING, monotonic_usec, notify, status
from reputable.postfix.milters import postfix_address
from reputable.reputation import Reputation, forbid_waiting
from reputable.runtime import Runtime, RuntimeHolder, load_runtime, no_domain

_log = logger("milter")
# uvloop (libuv) costs less per wakeup than asyncio's own loop; the milter wakes several
# times per message.
new_event_loop = uvloop.new_event_loop
STOP_GRACE_S = 30.0
DEFAULT_QUEUE_DIRECTORY = "/var/spool/postfix"  # Postfix's own default


async def open_server(
    config: Config, factory: Callable[[], asyncio.BaseProtocol]
) -> tuple[asyncio.Server, os.stat_result | None]:
    """Listen where configured; a socket that cannot be opened stops the start with the reason.

    Returns the server and, for a unix socket, the socket file's stat (to remove it at stop).
    """
    listen = config.milter.socket
    loop = asyncio.get_running_loop()
    try:
        if listen.kind == "unix":
            return await open_unix(config, factory)
        family = socket.AF_INET6 if listen.kind == "inet6" else socket.AF_INET
        server = await loop.create_server(
            factory, listen.host, listen.port, family=family, reuse_address=True, backlog=256
        )
    except OSError as exc:
        allowed = f"a free address this user may listen on ({exc.strerror or exc})"
        raise ConfigError(
            [Problem(config.source, "milter.socket", listen.libmilter, allowed)]
        ) from None
    for sock in server.sockets:
        # Replies leave at once; accepted sockets inherit it (asyncio sets it on them too).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server, None


def postfix_name(listen: MilterSocket) -> str:
    """How Postfix names the socket: a unix one inside its queue directory, relative to it.

    Postfix's daemons work in the queue directory, and a chrooted smtpd sees nothing
    outside it: `unix:reputable/milter.sock` reaches what the milter made at
    /var/spool/postfix/reputable/milter.sock; the absolute path would not.
    """
    queue = ""
    if listen.kind == "unix":
        queue = next(iter(postconf("queue_directory")), "") or DEFAULT_QUEUE_DIRECTORY
    return postfix_address(listen, queue)


def announce(runtime: Runtime, event: str, max_connections: int | None = None) -> None:
    listen = runtime.config.milter.socket
    name = postfix_name(listen)
    postfix = f"smtpd_milters = {name}; non_smtpd_milters = {name}"
    keys = " ".join(
        f"{k.domain}/{k.selector}/{k.algorithm.value}"
        for ks in runtime.keyring.by_domain.values()
        for k in ks
    )
    fields: dict[Field, object] = {
        Field.EVENT: event,
        Field.FILE: runtime.config.source,
        Field.VERSION: __version__,
        Field.SOCKET: listen.libmilter,
        Field.MODE: runtime.config.milter.mode,
        Field.DOMAIN: ",".join(runtime.domains) or "none",
        Field.KEYS: keys or "none",
        Field.POSTFIX: postfix,
        Field.MAX_CONNECTIONS: max_connections,
    }
    emit(_log, logging.INFO, fields)


def setup_text(runtime: Runtime) -> str:
    """What to paste into Postfix and DNS for this configuration (printed once at start)."""
    listen = postfix_name(runtime.config.milter.socket)
    lines = [
        f"reputable {__version__} listening on {runtime.config.milter.socket.libmilter}",
        "",
        "Add to Postfix's main.cf (or run `reputable setup postfix --apply`), then `postfix reload`:",
        f"    smtpd_milters = {listen}",
        f"    non_smtpd_milters = {listen}",
        "    milter_default_action = tempfail",
        "    milter_protocol = 6",
        "",
    ]
    keys = [k for ks in runtime.keyring.by_domain.values() for k in ks]
    if not runtime.domains:
        missing = no_domain(runtime.config)
        lines.append(f"Not signing: {missing.detail}.")
        lines.append(f"To sign, {missing.fix}; then run `reputable keys new` and restart.")
    elif not keys:
        lines.append(f"No active keys for {', '.join(runtime.domains)}: run `reputable keys new`.")
    else:
        lines.append("Publish in DNS (and check with `dig +short TXT NAME`):")
    for key in keys:
        value = record_value(key.algorithm, key.private_key)
        lines.extend(
            f"    {line}" for line in zone_file_line(key.selector, key.domain, value).splitlines()
        )
    return "\n".join(lines)


def serve(config: Config, reload_config: Callable[[], Config]) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    holder = RuntimeHolder(load_runtime(config))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(run(holder, config, reload_config))


class Listener:
    """The listening socket and the connections it has accepted, all on this event loop."""

    def __init__(
        self, holder: RuntimeHolder, config: Config, executor: Executor, nofile: int = 0
    ) -> None:
        self.holder = holder
        self.config = config
        self.executor = executor  # a LookupPool: each connection's jobs queue by its domain
        self.cap = ConnectionCap(derived_max_connections(nofile or open_file_limit()))
        self.connections: set[MilterConnection] = set()
        self.server: asyncio.Server | None = None
        self.socket_file: os.stat_result | None = None  # a unix socket made at open
        # Over a unix socket there is no Nagle delay to avoid, so DATA need not be answered.
        self.skip_data = config.milter.socket.kind == "unix"

    async def open(self) -> None:
        self.server, self.socket_file = await open_server(self.config, self.new_connection)

    def new_connection(self) -> asyncio.BaseProtocol:
        if not self.cap.admit(len(self.connections), self.max_connections):
            return Refused()
        lane = self.executor.lane() if isinstance(self.executor, LookupPool) else None

        def new_session() -> Session:
            session = Session(self.holder)
            if lane is not None:
                lane.domain = session.lookup_domain
            return session

        connection = MilterConnection(
            new_session, lane or self.executor, self.connections.discard, skip_data=self.skip_data
        )
        self.connections.add(connection)
        return connection

    @property
    def max_connections(self) -> int:
        """[milter] max_connections as now configured (a reload changes it), or the derived one."""
        return self.cap.limit(self.holder.current.config.milter.max_connections)

    async def close(self, grace_s: float) -> None:
        """Stop accepting, let messages in progress finish for up to *grace_s*, close the rest.

        A connection between messages is closed at once: the MTA opens a new one for
        its next message (Postfix applies milter_default_action if none answers).
        """
        if self.server is not None:
            self.server.close()
        self.remove_socket_file()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while True:
            late = loop.time() >= deadline
            for connection in list(self.connections):
                if (late or not connection.in_message) and connection.transport is not None:
                    connection.transport.close()
            if late or not self.connections:
                break
            await asyncio.sleep(0.02)
        while self.connections:
            await asyncio.sleep(0.005)

    def remove_socket_file(self) -> None:
        """Remove the unix socket this listener made (once; a no-op for TCP)."""
        if self.socket_file is not None:
            remove_socket(self.config.milter.socket.path, self.socket_file)
            self.socket_file = None


def service_status(runtime: Runtime) -> str:
    """One line for `systemctl status`: where it listens and what it signs with."""
    keys = sum(len(ks) for ks in runtime.keyring.by_domain.values())
    domains = ", ".join(runtime.domains)
    listening = f"listening on {runtime.config.milter.socket.libmilter}"
    if not domains:
        return f"{listening}; not signing: this host has no mail domain"
    return f"{listening}; {keys} keys for {domains}"


async def run(holder: RuntimeHolder, config: Config, reload_config: Callable[[], Config]) -> int:
    loop = asyncio.get_running_loop()
    forbid_waiting()  # this thread serves every connection: DNS waits go to the workers
    stop = asyncio.Event()
    stopping = threading.Event()
    executor = LookupPool()
    listener = Listener(holder, config, executor, raise_fd_limit())

    def on_stop(signum: signal.Signals) -> None:
        emit(_log, logging.INFO, {Field.EVENT: "stop", Field.DETAIL: signum.name})
        notify(STOPPING, status("stopping: letting messages in progress finish"))
        stopping.set()
        stop.set()

    # The gate's engine first (finding the host's identity may wait on DNS), so that no
    # message is accepted before the gate can judge it; it is built on a worker thread.
    await loop.run_in_executor(executor, start_reputation, holder)
    await listener.open()
    try:
        side = await open_side_servers(config, holder, executor)
    except ConfigError:
        listener.remove_socket_file()
        raise
    sweeper: asyncio.Task[None] | None = None
    try:
        loop.add_signal_handler(signal.SIGHUP, reload, holder, reload_config, executor)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_stop, signum)
        announce(holder.current, "start", listener.max_connections)
        print(setup_text(holder.current), flush=True)
        KeyWatcher(holder, stopping).start()
        sweeper = asyncio.create_task(close_idle(listener.connections, holder))
        # What exists now lives as long as the process: keep it out of every garbage collection.
        gc.freeze()
        # Listening, keys loaded, the gate judging: systemd may now start Postfix (Before=).
        notify(READY, status(service_status(holder.current)))
        await stop.wait()
        await listener.close(STOP_GRACE_S)
    finally:
        listener.remove_socket_file()
        close_side_servers(config, side)
        if sweeper is not None:
            sweeper.cancel()
        if holder.reputation is not None:
            holder.reputation.stop()
        executor.shutdown(wait=False, cancel_futures=True)
    return 0


async def open_side_servers(
    config: Config, holder: RuntimeHolder, executor: Executor
) -> list[asyncio.Server]:
    """/metrics and the gate for Exim, where configured; all or none (ConfigError)."""
    servers: list[asyncio.Server] = []
    try:
        if config.metrics.listen is not None:
            holder.metrics = Metrics(holder)
            servers.append(await serve_metrics(config, holder.metrics))
        if config.exim.socket is not None:
            servers.append(await serve_exim(config, holder, executor))
    except ConfigError:
        close_side_servers(config, servers)
        raise
    return servers


def close_side_servers(config: Config, servers: list[asyncio.Server]) -> None:
    for server in servers:
        server.close()
    if config.exim.socket is not None and servers:
        remove_exim_socket(config.exim.socket)


async def close_idle(connections: set[MilterConnection], holder: RuntimeHolder) -> None:
    """Close connections the MTA has left silent for longer than milter.timeout."""
    while True:
        await asyncio.sleep(1.0)
        limit = holder.current.config.milter.timeout_s
        now = time.monotonic()
        for connection in list(connections):
            idle = now - connection.last_active
            if idle > limit and not connection.waiting and connection.transport is not None:
                emit(_log, logging.INFO, {Field.EVENT: "timeout", Field.DETAIL: f"{idle:.0f}s"})
                connection.transport.close()


_engine_swap = threading.Lock()


def start_reputation(holder: RuntimeHolder) -> None:
    """(Re)start the gate's engine for the current configuration; the old one stops.

    May wait on DNS (the host's name): run it on a worker thread, never on the loop.
    """
    with _engine_swap:
        old = holder.reputation
        engine = Reputation(holder)
        engine.start()
        holder.inbound = InboundLookups(engine)
        holder.reputation = engine
        if old is not None:
            old.stop()


def reload(holder: RuntimeHolder, reload_config: Callable[[], Config], executor: Executor) -> None:
    """SIGHUP: build a new Runtime from the files; on any problem keep running with the old one.

    The files are read on a worker, never on this loop: a config or key file may be
    slow, hostile or not a file at all, and every connection waits while the loop does.
    The new runtime is swapped here on the loop; the gate's engine is rebuilt on a
    worker, the old one judging meanwhile, and "reloaded" is logged when both are in
    place. systemd hears RELOADING=1 now and READY=1 once done, whether the reload
    took or not.
    """
    notify(RELOADING, monotonic_usec(), status("reloading"))
    loop = asyncio.get_running_loop()
    loop.run_in_executor(executor, _read_for_reload, loop, holder, reload_config, executor)


# One reading at a time, so that the runtimes reach the loop in the order they were read.
# A reading never blocks for long: files are read non-blocking, lookups have a timeout.
_reload_reads = threading.Lock()


def _read_for_reload(
    loop: asyncio.AbstractEventLoop,
    holder: RuntimeHolder,
    reload_config: Callable[[], Config],
    executor: Executor,
) -> None:
    """On a worker: read config and key store, then hand the outcome to the loop."""
    with _reload_reads:
        outcome: Callable[[], None]
        try:
            config = reload_config()
            runtime = load_runtime(config)
        except ConfigError as exc:
            outcome = functools.partial(_refuse_reload, holder, exc.problems)
        except Exception as exc:  # a bug in reading: logged like a refusal, never a lost SIGHUP
            problem = Problem("<reload>", "(internal)", repr(exc), "a report of this as a bug")
            outcome = functools.partial(_refuse_reload, holder, (problem,))
        else:
            outcome = functools.partial(_swap_runtime, holder, runtime, executor)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: we are stopping
            loop.call_soon_threadsafe(outcome)


def _refuse_reload(holder: RuntimeHolder, problems: Sequence[Problem]) -> None:
    emit_problems(_log, "reload_failed", problems)
    notify(READY, status(f"{service_status(holder.current)}; reload failed, see the log"))


def _swap_runtime(holder: RuntimeHolder, runtime: Runtime, executor: Executor) -> None:
    """On the loop: the new runtime for the next message; the gate's engine rebuilt on a worker."""
    config = runtime.config
    if config.milter.socket != holder.current.config.milter.socket:
        detail = "milter.socket changes only on restart"
        emit(_log, logging.WARNING, {Field.EVENT: "reload", Field.DETAIL: detail})
    if config.exim != holder.current.config.exim:
        detail = "the [exim] socket changes only on restart"
        emit(_log, logging.WARNING, {Field.EVENT: "reload", Field.DETAIL: detail})
    if config.metrics != holder.current.config.metrics:
        detail = "metrics.listen changes only on restart"
        emit(_log, logging.WARNING, {Field.EVENT: "reload", Field.DETAIL: detail})
    configure_logging(config.log)
    holder.replace(runtime)

    def done(future: asyncio.Future[None]) -> None:
        if future.exception() is not None:
            detail = f"the gate kept its old engine: {future.exception()!r}"
            emit(_log, logging.ERROR, {Field.EVENT: "reload_failed", Field.DETAIL: detail})
        announce(runtime, "reloaded")
        notify(READY, status(service_status(runtime)))

    future = asyncio.get_running_loop().run_in_executor(executor, start_reputation, holder)
    future.add_done_callback(done)
