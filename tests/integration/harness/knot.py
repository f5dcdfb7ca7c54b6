"""A real Knot DNS server (knotd) for the integration tests: one zone, RFC 2136 updates, TSIG.

:class:`KnotServer` runs ``knotd -c DIR/knot.conf`` in the foreground as a
child process, everything under its own temporary directory::

    DIR/knot.conf          the configuration (below)
    DIR/zones/ZONE.zone    the zone file, written here, then kept by knotd
    DIR/db/                knotd's storage: journal, timer, KASP and catalog databases
    DIR/run/               rundir: the control socket (knot.sock)
    DIR/tsig.key           the TSIG key in BIND format, mode 0600, for reputable
    DIR/knotd.log          knotd's stdout and stderr (log target stderr)

It listens on port 53 of a random ``127.54.x.y`` address (any 127/8 address
can be bound on Linux; port 53 needs root), so the zone's NS can point at it
and a client that can only ask port 53, as with an NS from a delegation,
reaches it.  The zone has an SOA, ``NS ns1.ZONE.`` and ``ns1.ZONE. A`` the
listen address; updates are allowed to the one TSIG key (hmac-sha256, a
fresh random secret per server), with the serial incremented and the journal
kept by knotd itself (its defaults: ``serial-policy: increment``,
``zonefile-sync: 0``).

What knotd 3.2 (Debian 12) needs when run this way:

* No ``server.user``: knotd then keeps the uid it was started as (root),
  so the temporary directories need no chown.  Debian's
  ``/etc/knot/knot.conf`` (``user: knot:knot``, rundir ``/run/knot``, storage
  ``/var/lib/knot``) is never read, and no system service is started.
* ``database.storage`` moves every database (journal, timers, KASP,
  catalog) into the instance directory; the rundir holds the control socket.
* One worker of each kind keeps it to a handful of threads.

Readiness is polled (an SOA query answered with AA) with a deadline; a knotd
that exits early raises with its log.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import errno
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA

from reputable.config import Nameserver
from reputable.keys.publish import TsigKey

from .service import Service

KNOTD_CANDIDATES = ("/usr/sbin/knotd", "/usr/bin/knotd")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
DEFAULT_TTL = 300


def knotd_path() -> str:
    found = shutil.which("knotd") or next(
        (p for p in KNOTD_CANDIDATES if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise RuntimeError("knotd not found: install the Debian package `knot` (make test does)")
    return found


def bind_key_file(key: TsigKey) -> str:
    """The key in BIND's format (what `tsig-keygen` prints)."""
    secret = base64.b64encode(key.secret).decode("ascii")
    return f'key "{key.name}" {{\n\talgorithm {key.algorithm};\n\tsecret "{secret}";\n}};\n'


def _free_port53_address() -> str:
    """A random 127.54.x.y whose port 53 is free for UDP and TCP now."""
    rng = random.SystemRandom()
    last: OSError | None = None
    for _ in range(30):
        host = f"127.54.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((host, 53))
            tcp.bind((host, 53))
        except OSError as e:
            last = e
            if e.errno != errno.EADDRINUSE:
                break
            continue
        finally:
            udp.close()
            tcp.close()
        return host
    raise OSError(
        last.errno if last else errno.EADDRINUSE,
        f"no free port 53 on a 127.54.x.y address (needs root): {last}",
    )


class KnotServer(Service):
    """knotd authoritative for `zone` on ``(127.54.x.y, 53)``, taking TSIG-signed updates.

    Use as a context manager, or :meth:`start` / :meth:`stop`.  ``key`` is the
    TSIG key knotd accepts and ``key_file`` the same key in BIND format (0600).
    """

    def __init__(self, zone: str, *, key_name: str = "reputable-test", keep: bool = False) -> None:
        self.zone = zone.rstrip(".").lower()
        self.ns_name = f"ns1.{self.zone}"
        self.key = TsigKey(key_name, "hmac-sha256", secrets.token_bytes(32))
        self.keep = keep
        self.directory = Path(tempfile.mkdtemp(prefix="reputable-knot-"))
        self.key_file = self.directory / "tsig.key"
        self.log_file = self.directory / "knotd.log"
        self.host = ""
        self._process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ life

    @property
    def address(self) -> tuple[str, int]:
        if not self.host:
            raise RuntimeError("KnotServer is not started")
        return (self.host, 53)

    @property
    def nameserver(self) -> Nameserver:
        return Nameserver(*self.address)

    @property
    def soa_text(self) -> str:
        """The zone's first SOA rdata (knotd increments the serial on each update)."""
        return f"{self.ns_name}. hostmaster.{self.zone}. 1 3600 900 604800 {DEFAULT_TTL}"

    def start(self) -> Self:
        if self._process is not None:
            raise RuntimeError("KnotServer already started")
        self.host = _free_port53_address()
        self._write_files()
        atexit.register(self.stop)  # a session that dies before teardown leaves no knotd
        log = self.log_file.open("ab")
        try:
            self._process = subprocess.Popen(
                [knotd_path(), "-c", str(self.directory / "knot.conf")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest does not reach it first
            )
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT)
            self._process = None
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # --------------------------------------------------------------- queries

    def query(self, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
        """Ask knotd directly (no recursion) for `name` `rdtype`."""
        query = dns.message.make_query(name, rdtype, flags=0)
        if tcp:
            return dns.query.tcp(query, self.host, timeout=5.0, port=53)
        return dns.query.udp(query, self.host, timeout=5.0, port=53)

    def txt_strings(self, name: str) -> list[tuple[bytes, ...]]:
        """The character-strings of each TXT record at `name`, as knotd serves them."""
        response = self.query(name, "TXT", tcp=True)
        return [
            tuple(rd.strings)
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rd in rrset
        ]

    def serial(self) -> int:
        response = self.query(self.zone, "SOA")
        for rrset in response.answer:
            for rd in rrset:
                if isinstance(rd, dns.rdtypes.ANY.SOA.SOA):
                    return int(rd.serial)
        raise RuntimeError(f"knotd gave no SOA for {self.zone}: {response}")

    # -------------------------------------------------------------- internals

    def _write_files(self) -> None:
        d = self.directory
        for sub in ("zones", "db", "run"):
            (d / sub).mkdir(mode=0o700, exist_ok=True)
        secret = base64.b64encode(self.key.secret).decode("ascii")
        config = f"""\
server:
    rundir: "{d}/run"
    listen: [ {self.host}@53 ]
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

log:
  - target: stderr
    any: info

database:
    storage: "{d}/db"

key:
  - id: {self.key.name}
    algorithm: {self.key.algorithm}
    secret: {secret}

acl:
  - id: update
    key: {self.key.name}
    action: update

template:
  - id: default
    storage: "{d}/zones"
    file: "%s.zone"

zone:
  - domain: {self.zone}
    acl: update
"""
        zone_file = f"""\
$ORIGIN {self.zone}.
$TTL {DEFAULT_TTL}
@    SOA  {self.soa_text}
@    NS   {self.ns_name}.
ns1  A    {self.host}
"""
        _write_private(d / "knot.conf", config)
        _write_private(d / "zones" / f"{self.zone}.zone", zone_file)
        _write_private(self.key_file, bind_key_file(self.key))

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        query = dns.message.make_query(self.zone, dns.rdatatype.SOA, flags=0)
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"knotd exited with {self._process.returncode} before serving {self.zone}:\n"
                    f"{self.log_text()}"
                )
            try:
                response = dns.query.udp(query, self.host, timeout=0.2, port=53)
            except (dns.exception.Timeout, OSError) as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA:
                    return
                last = f"answered {dns.rcode.to_text(response.rcode())}"
            # Pace the polling by waiting for knotd to exit (which ends the wait early).
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=0.05)
        raise RuntimeError(
            f"knotd did not serve {self.zone} within {START_TIMEOUT}s ({last}):\n{self.log_text()}"
        )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
