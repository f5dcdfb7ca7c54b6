"""Run the milter: open the socket, serve sessions, reload on SIGHUP, stop on SIGTERM. I/O.

libmilter masks SIGHUP/SIGTERM/SIGINT in the thread that calls smfi_main and
answers SIGHUP by *stopping*. So libmilter runs in a worker thread, and the
main thread, which keeps those signals unmasked, receives them: SIGHUP
reloads config and keys into a new Runtime (sessions in flight finish with
the one they started with), SIGTERM/SIGINT stop accepting and return.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import Milter
import milter as libmilter

from reputable import __version__
from reputable.config import Config, MilterSocket
from reputable.errors import ConfigError, Problem
from reputable.keys.record import record_value, zone_file_line
from reputable.keywatch import KeyWatcher
from reputable.log import Field, configure_logging, emit, logger
from reputable.milter.session import Session
from reputable.reputation import Reputation
from reputable.runtime import Runtime, RuntimeHolder, load_runtime

_log = logger("milter")
NAME = "reputable"
STOP_GRACE_S = 30.0


def set_nodelay(listen: MilterSocket) -> bool:
    """Set TCP_NODELAY on libmilter's listening socket; accepted sockets inherit it (Linux).

    Without it, Nagle's algorithm holds the milter's second small write (the
    reply after a header change) until Postfix's delayed ACK: about 40 ms a
    message. libmilter does not expose the socket, so find it among our fds.
    """
    if listen.kind == "unix":
        return False
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6):
                listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                if listening and sock.getsockname()[1] == listen.port:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return True
        finally:
            sock.detach()
    return False


def open_socket(config: Config) -> None:
    """Listen where configured; a socket that cannot be opened stops the start with the reason."""
    listen = config.milter.socket
    if listen.kind == "unix":
        Path(listen.path).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    libmilter.setconn(listen.libmilter)
    libmilter.settimeout(config.milter.timeout_s)
    old_umask = os.umask(0o777 & ~config.milter.socket_mode)
    try:
        libmilter.opensocket(True)
    except libmilter.error as exc:
        allowed = f"a free address this user may listen on ({exc})"
        raise ConfigError(
            [Problem(config.source, "milter.socket", listen.libmilter, allowed)]
        ) from None
    finally:
        os.umask(old_umask)
    set_nodelay(listen)


def register(holder: RuntimeHolder) -> None:
    Milter.factory = lambda: Session(holder)
    libmilter.set_flags(Milter.ADDHDRS | Milter.QUARANTINE | Milter.SETSYMLIST)
    libmilter.set_connect_callback(Milter.connect_callback)
    libmilter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    libmilter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    libmilter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    libmilter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    libmilter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    libmilter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    libmilter.set_close_callback(Milter.close_callback)
    libmilter.register(
        NAME,
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: Milter.CONTINUE,
        negotiate=Milter.negotiate_callback,
    )


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
    stopping = threading.Event()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        reload(holder, reload_config)

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        emit(_log, logging.INFO, {Field.EVENT: "stop", Field.DETAIL: signal.Signals(signum).name})
        # smfi_stop() blocks until libmilter's listener wakes from its poll
        # (seconds); stop accepting in the background and drain meanwhile.
        threading.Thread(target=libmilter.stop, name="stop", daemon=True).start()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    register(holder)
    open_socket(config)
    announce(holder.current, "start")
    print(setup_text(holder.current), flush=True)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            libmilter.main()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="libmilter", daemon=True)
    worker.start()
    KeyWatcher(holder, stopping).start()
    start_reputation(holder)
    while worker.is_alive() and not stopping.is_set():
        worker.join(0.5)
    if failure and not stopping.is_set():
        emit(_log, logging.ERROR, {Field.EVENT: "exit", Field.ERROR: repr(failure[0])})
        return 1
    drain(holder, STOP_GRACE_S)
    return 0


def drain(holder: RuntimeHolder, grace_s: float) -> None:
    """Wait for open connections to finish (libmilter no longer accepts new ones)."""
    deadline = time.monotonic() + grace_s
    while holder.sessions > 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def start_reputation(holder: RuntimeHolder) -> None:
    """(Re)start the gate's engine for the current configuration; the old one stops."""
    old = holder.reputation
    engine = Reputation(holder)
    engine.start()
    holder.reputation = engine
    if old is not None:
        old.stop()


def reload(holder: RuntimeHolder, reload_config: Callable[[], Config]) -> None:
    """Build a new Runtime from the files; on any problem keep running with the old one."""
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
    start_reputation(holder)
    announce(runtime, "reloaded")
