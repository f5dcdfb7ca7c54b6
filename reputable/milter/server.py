"""Run the milter: listen, serve connections on one event loop, reload on SIGHUP, stop on SIGTERM.

Every connection is served by `reputable.milter.connection` on one asyncio
loop in the main thread: no thread per connection, so no callback waits for
the GIL behind another connection's. Lookups that must wait for DNS run on a
small pool of worker threads. SIGHUP reloads config and keys into a new
Runtime (sessions in flight finish with the one they started with);
SIGTERM/SIGINT stop accepting, let open sessions finish, and return.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import uvloop

from reputable import __version__
from reputable.config import Config
from reputable.errors import ConfigError, Problem
from reputable.keys.record import record_value, zone_file_line
from reputable.keywatch import KeyWatcher
from reputable.log import Field, configure_logging, emit, logger
from reputable.milter.connection import MilterConnection
from reputable.milter.session import Session
from reputable.reputation import Reputation, forbid_waiting
from reputable.runtime import Runtime, RuntimeHolder, load_runtime

_log = logger("milter")
# uvloop (libuv) costs less per wakeup than asyncio's own loop; the milter wakes several
# times per message.
new_event_loop = uvloop.new_event_loop
STOP_GRACE_S = 30.0
LOOKUP_THREADS = 16


async def open_server(
    config: Config, factory: Callable[[], asyncio.BaseProtocol]
) -> asyncio.Server:
    """Listen where configured; a socket that cannot be opened stops the start with the reason."""
    listen = config.milter.socket
    loop = asyncio.get_running_loop()
    try:
        if listen.kind == "unix":
            return await open_unix(listen.path, config.milter.socket_mode, factory)
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
    return server


async def open_unix(
    path: str, mode: int, factory: Callable[[], asyncio.BaseProtocol]
) -> asyncio.Server:
    """A unix socket with the configured mode; a stale socket is replaced, any other file kept.

    A socket that still answers belongs to a running milter: that is an error
    (EADDRINUSE), not something to take over.
    """
    where = Path(path)
    where.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        if stat.S_ISSOCK(where.lstat().st_mode):
            if _answers(path):
                raise OSError(errno.EADDRINUSE, "another process listens on it")
            where.unlink()
    except FileNotFoundError:
        pass
    old_umask = os.umask(0o777 & ~mode)
    try:
        server = await asyncio.get_running_loop().create_unix_server(factory, path, backlog=256)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    return server


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def announce(runtime: Runtime, event: str) -> None:
    listen = runtime.config.milter.socket
    postfix = f"smtpd_milters = {listen.postfix}; non_smtpd_milters = {listen.postfix}"
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
        Field.DOMAIN: ",".join(runtime.domains),
        Field.KEYS: keys or "none",
        Field.POSTFIX: postfix,
    }
    emit(_log, logging.INFO, fields)


def setup_text(runtime: Runtime) -> str:
    """What to paste into Postfix and DNS for this configuration (printed once at start)."""
    listen = runtime.config.milter.socket.postfix
    lines = [
        f"reputable {__version__} listening on {runtime.config.milter.socket.libmilter}",
        "",
        "Add to Postfix's main.cf, then run `postfix reload`:",
        f"    smtpd_milters = {listen}",
        f"    non_smtpd_milters = {listen}",
        "    milter_default_action = tempfail",
        "",
    ]
    keys = [k for ks in runtime.keyring.by_domain.values() for k in ks]
    undotted = [d for d in runtime.domains if "." not in d]
    if undotted:
        lines.append(
            f"This host has no mail domain ({', '.join(undotted)}): set [signing] domains in "
            "/etc/reputable/reputable.toml (or write the domain to /etc/mailname)."
        )
        lines.append("")
    if not keys:
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

    def __init__(self, holder: RuntimeHolder, config: Config, executor: Executor) -> None:
        self.holder = holder
        self.config = config
        self.executor = executor
        self.connections: set[MilterConnection] = set()
        self.server: asyncio.Server | None = None
        # Over a unix socket there is no Nagle delay to avoid, so DATA need not be answered.
        self.skip_data = config.milter.socket.kind == "unix"

    async def open(self) -> None:
        self.server = await open_server(self.config, self.new_connection)

    def new_connection(self) -> MilterConnection:
        connection = MilterConnection(
            lambda: Session(self.holder),
            self.executor,
            self.connections.discard,
            skip_data=self.skip_data,
        )
        self.connections.add(connection)
        return connection

    async def close(self, grace_s: float) -> None:
        """Stop accepting, let messages in progress finish for up to *grace_s*, close the rest.

        A connection between messages is closed at once: the MTA opens a new one for
        its next message (Postfix applies milter_default_action if none answers).
        """
        if self.server is not None:
            self.server.close()
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


async def run(holder: RuntimeHolder, config: Config, reload_config: Callable[[], Config]) -> int:
    loop = asyncio.get_running_loop()
    forbid_waiting()  # this thread serves every connection: DNS waits go to the workers
    stop = asyncio.Event()
    stopping = threading.Event()
    executor = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="lookup")
    listener = Listener(holder, config, executor)

    def on_stop(signum: signal.Signals) -> None:
        emit(_log, logging.INFO, {Field.EVENT: "stop", Field.DETAIL: signum.name})
        stopping.set()
        stop.set()

    # The gate's engine first (finding the host's identity may wait on DNS), so that no
    # message is accepted before the gate can judge it; it is built on a worker thread.
    await loop.run_in_executor(executor, start_reputation, holder)
    await listener.open()
    loop.add_signal_handler(signal.SIGHUP, reload, holder, reload_config, executor)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop, signum)
    announce(holder.current, "start")
    print(setup_text(holder.current), flush=True)
    KeyWatcher(holder, stopping).start()
    sweeper = asyncio.create_task(close_idle(listener.connections, holder))
    # What exists now lives as long as the process: keep it out of every garbage collection.
    gc.freeze()
    try:
        await stop.wait()
        await listener.close(STOP_GRACE_S)
    finally:
        sweeper.cancel()
        if holder.reputation is not None:
            holder.reputation.stop()
        executor.shutdown(wait=False, cancel_futures=True)
    return 0


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
        holder.reputation = engine
        if old is not None:
            old.stop()


def reload(holder: RuntimeHolder, reload_config: Callable[[], Config], executor: Executor) -> None:
    """Build a new Runtime from the files; on any problem keep running with the old one.

    The runtime is swapped at once; the gate's engine is rebuilt on a worker, the old
    one judging meanwhile, and "reloaded" is logged when both are in place.
    """
    try:
        config = reload_config()
        runtime = load_runtime(config)
    except ConfigError as exc:
        for problem in exc.problems:
            emit(_log, logging.ERROR, {Field.EVENT: "reload_failed", Field.DETAIL: str(problem)})
        return
    if config.milter.socket != holder.current.config.milter.socket:
        detail = "milter.socket changes only on restart"
        emit(_log, logging.WARNING, {Field.EVENT: "reload", Field.DETAIL: detail})
    configure_logging(config.log)
    holder.replace(runtime)

    def done(future: asyncio.Future[None]) -> None:
        if future.exception() is not None:
            detail = f"the gate kept its old engine: {future.exception()!r}"
            emit(_log, logging.ERROR, {Field.EVENT: "reload_failed", Field.DETAIL: detail})
        announce(runtime, "reloaded")

    future = asyncio.get_running_loop().run_in_executor(executor, start_reputation, holder)
    future.add_done_callback(done)
