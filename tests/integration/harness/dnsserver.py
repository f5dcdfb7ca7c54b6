"""An in-process authoritative DNS server for the integration tests.

It speaks real DNS packets over UDP and TCP (built on dnspython's message
codec and plain sockets) from one background thread, plus one short-lived
thread per TCP connection.  Records are changed at run time, thread-safely,
while the server runs; every query it receives is logged so that tests can
count lookups.

Behaviour, in the terms of RFC 1035 / 6891:

* every answer has AA set and RA clear; the server is authoritative for every
  name it holds and has no zone cuts;
* an unknown name is NXDOMAIN; a known name (or an empty non-terminal: a name
  with records only below it) asked for another type is NOERROR with an empty
  answer;
* CNAMEs are followed inside the server's data (at most 8 hops);
* over UDP an answer larger than 512 bytes (no EDNS) or than the requester's
  EDNS payload size is sent empty with TC set, so the client retries over TCP;
* EDNS queries get an EDNS response advertising :data:`EDNS_PAYLOAD`;
* a name can be made to *drop* its queries (no answer at all, so the client
  times out) or to answer with a fixed rcode such as SERVFAIL; the whole
  server can be made *silent* (it drops every query: a resolver that never
  answers). A server holding no records answers NXDOMAIN for every name,
  the root included: a resolver that cannot see the internet's DNS.

TXT records keep their character-strings exactly as given (each at most 255
bytes), so the way a client joins split strings is exercised for real.

The server listens on any number of ``(host, port)`` pairs; port 0 picks an
ephemeral port (the same port for UDP and TCP).  With ``port53=True`` it also
listens on port 53 of a random, otherwise unused ``127.53.x.y`` address, for
clients that cannot be told a port (binding any 127/8 address works on Linux;
port 53 needs root).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self, TypeAlias

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TXT
import dns.rrset

from .service import Service

DEFAULT_TTL = 300
"""TTL of records set without an explicit ``ttl``."""

EDNS_PAYLOAD = 4096
"""The UDP payload size this server advertises and caps EDNS answers at."""

PLAIN_UDP_LIMIT = 512
"""The largest UDP answer to a query without EDNS (RFC 1035)."""

MAX_TXT_STRING = 255
"""The largest TXT character-string, in bytes."""

_MAX_CNAME_HOPS = 8
_TCP_IDLE_TIMEOUT = 10.0

NameLike: TypeAlias = str | dns.name.Name
RdtypeLike: TypeAlias = str | int | dns.rdatatype.RdataType


@dataclass(frozen=True)
class QueryLogEntry:
    """One query the server received (logged before it is answered or dropped)."""

    qname: str
    """The name asked for: lower case, no trailing dot (``sel1._domainkey.example.com``)."""
    qtype: str
    """The type asked for, as text (``TXT``)."""
    transport: str
    """``udp`` or ``tcp``."""
    client: tuple[str, int]
    listener: tuple[str, int]
    """The server address the query arrived on."""
    edns_payload: int | None
    """The requester's EDNS payload size, or None for a query without EDNS."""
    time: float
    """``time.monotonic()`` when the query arrived."""


def txt_chunks(value: str | bytes, size: int = MAX_TXT_STRING) -> tuple[bytes, ...]:
    """Split one long TXT value into character-strings of at most *size* bytes."""
    data = value.encode() if isinstance(value, str) else value
    if not 1 <= size <= MAX_TXT_STRING:
        raise ValueError(f"TXT string size must be 1..{MAX_TXT_STRING}, not {size}")
    if not data:
        return (b"",)
    return tuple(data[i : i + size] for i in range(0, len(data), size))


def to_name(name: NameLike) -> dns.name.Name:
    """An absolute dnspython name from text (trailing dot optional) or a name."""
    if isinstance(name, dns.name.Name):
        return name if name.is_absolute() else name.concatenate(dns.name.root)
    return dns.name.from_text(name, origin=dns.name.root)


def name_text(name: NameLike) -> str:
    """The canonical text the query log uses: lower case, no trailing dot."""
    return to_name(name).to_text(omit_final_dot=True).lower()


def _to_rdtype(rdtype: RdtypeLike) -> dns.rdatatype.RdataType:
    if isinstance(rdtype, str):
        return dns.rdatatype.from_text(rdtype)
    return dns.rdatatype.RdataType.make(rdtype)


def reverse_name(address: str) -> dns.name.Name:
    """The PTR owner name of an IPv4 or IPv6 address (``1.0.0.127.in-addr.arpa.``)."""
    return dns.name.from_text(ipaddress.ip_address(address).reverse_pointer + ".")


class DnsServer(Service):
    """An authoritative DNS server on loopback, in a background thread.

    Use as a context manager or call :meth:`start` / :meth:`stop`.  All the
    record-changing methods may be called from any thread, before or after
    :meth:`start`.
    """

    def __init__(
        self,
        listen: Iterable[tuple[str, int]] = (("127.0.0.1", 0),),
        *,
        port53: bool = False,
        default_ttl: int = DEFAULT_TTL,
    ) -> None:
        self._requested = list(listen)
        self._want_port53 = port53
        self.default_ttl = default_ttl
        self._lock = threading.Lock()
        self._zone: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        self._drop: set[dns.name.Name] = set()
        self._silent = False
        self._rcodes: dict[dns.name.Name, dns.rcode.Rcode] = {}
        self._log: list[QueryLogEntry] = []
        self._log_changed = threading.Condition(self._lock)
        self._udp: list[socket.socket] = []
        self._tcp: list[socket.socket] = []
        self._addresses: list[tuple[str, int]] = []
        self._port53: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._conn_threads: set[threading.Thread] = set()
        self._conn_socks: set[socket.socket] = set()
        self._errors: list[BaseException] = []

    # ------------------------------------------------------------------ life

    @property
    def address(self) -> tuple[str, int]:
        """The first address listened on (UDP and TCP), e.g. ``("127.0.0.1", 40123)``."""
        if not self._addresses:
            raise RuntimeError("DnsServer is not started")
        return self._addresses[0]

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """Every address listened on, including :attr:`port53_address`."""
        return tuple(self._addresses)

    @property
    def port53_address(self) -> tuple[str, int] | None:
        """The ``(127.53.x.y, 53)`` address when started with ``port53=True``."""
        return self._port53

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """Unexpected exceptions raised while serving (should stay empty)."""
        with self._lock:
            return tuple(self._errors)

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("DnsServer already started")
        try:
            for host, port in self._requested:
                self._addresses.append(self._bind(host, port))
            if self._want_port53:
                self._port53 = self._bind_port53()
                self._addresses.append(self._port53)
        except BaseException:
            self._close_sockets()
            raise
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="DnsServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        thread.join(timeout=5)
        with self._lock:
            conns = list(self._conn_socks)
            conn_threads = list(self._conn_threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for t in conn_threads:
            t.join(timeout=5)
        self._close_sockets()
        self._thread = None
        self._addresses.clear()
        self._port53 = None

    def _bind(self, host: str, port: int) -> tuple[str, int]:
        """Bind UDP and TCP on the same port; with port 0 retry until both fit."""
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                udp.bind((host, port))
                actual = udp.getsockname()[1]
                tcp.bind((host, actual))
                tcp.listen(64)
            except OSError as e:
                udp.close()
                tcp.close()
                if port == 0 and e.errno == errno.EADDRINUSE:
                    continue
                raise OSError(e.errno, f"DnsServer cannot listen on {host}:{port}: {e}") from e
            udp.setblocking(False)
            tcp.setblocking(False)
            self._udp.append(udp)
            self._tcp.append(tcp)
            return host, int(actual)
        raise OSError(errno.EADDRINUSE, f"DnsServer found no free port on {host}")

    def _bind_port53(self) -> tuple[str, int]:
        rng = random.SystemRandom()
        last: OSError | None = None
        for _ in range(20):
            host = f"127.53.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
            try:
                return self._bind(host, 53)
            except OSError as e:
                last = e
                if e.errno != errno.EADDRINUSE:
                    break
        raise OSError(
            last.errno if last else errno.EADDRINUSE,
            f"DnsServer cannot listen on port 53 of a 127.53.x.y address "
            f"(needs root or CAP_NET_BIND_SERVICE): {last}",
        )

    def _close_sockets(self) -> None:
        for s in [*self._udp, *self._tcp]:
            s.close()
        self._udp.clear()
        self._tcp.clear()
        for w in (self._wake_r, self._wake_w):
            if w is not None:
                w.close()
        self._wake_r = self._wake_w = None

    # --------------------------------------------------------------- records

    def set_records(
        self,
        name: NameLike,
        rdtype: RdtypeLike,
        rdatas: Iterable[str | dns.rdata.Rdata],
        ttl: int | None = None,
    ) -> None:
        """Replace the *rdtype* records of *name* (rdata given as zone-file text or objects)."""
        owner = to_name(name)
        rtype = _to_rdtype(rdtype)
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rtype)
        for rd in rdatas:
            rrset.add(
                dns.rdata.from_text(
                    dns.rdataclass.IN, rtype, rd, origin=dns.name.root, relativize=False
                )
                if isinstance(rd, str)
                else rd
            )
        if not rrset:
            raise ValueError("set_records needs at least one rdata; use remove() to delete")
        rrset.ttl = (
            self.default_ttl if ttl is None else ttl
        )  # update_ttl keeps the smaller of the two: 0 for a new rrset
        with self._lock:
            node = self._zone.setdefault(owner, {})
            if rtype == dns.rdatatype.CNAME:
                node.clear()
            else:
                node.pop(dns.rdatatype.CNAME, None)
            node[rtype] = rrset

    def add_record(
        self,
        name: NameLike,
        rdtype: RdtypeLike,
        rdata: str | dns.rdata.Rdata,
        ttl: int | None = None,
    ) -> None:
        """Add one record to the *rdtype* RRset of *name* (keeps the others)."""
        owner = to_name(name)
        rtype = _to_rdtype(rdtype)
        with self._lock:
            existing = self._zone.get(owner, {}).get(rtype)
            current = list(existing) if existing is not None else []
            keep_ttl = existing.ttl if existing is not None else None
        self.set_records(owner, rtype, [*current, rdata], ttl if ttl is not None else keep_ttl)

    @staticmethod
    def _txt_rdata(strings: Iterable[str | bytes]) -> dns.rdtypes.ANY.TXT.TXT:
        raw = [s.encode() if isinstance(s, str) else s for s in strings]
        if not raw:
            raise ValueError("a TXT record needs at least one character-string")
        for s in raw:
            if len(s) > MAX_TXT_STRING:
                raise ValueError(
                    f"TXT character-string of {len(s)} bytes exceeds {MAX_TXT_STRING}; "
                    "split it (txt_chunks) or pass several strings"
                )
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, raw)

    def set_txt(self, name: NameLike, *strings: str | bytes, ttl: int | None = None) -> None:
        """Make *name* have exactly one TXT record made of these character-strings."""
        self.set_records(name, dns.rdatatype.TXT, [self._txt_rdata(strings)], ttl)

    def add_txt(self, name: NameLike, *strings: str | bytes, ttl: int | None = None) -> None:
        """Add another TXT record (of these character-strings) to *name*."""
        self.add_record(name, dns.rdatatype.TXT, self._txt_rdata(strings), ttl)

    def set_a(self, name: NameLike, *addresses: str, ttl: int | None = None) -> None:
        self.set_records(name, dns.rdatatype.A, addresses, ttl)

    def set_aaaa(self, name: NameLike, *addresses: str, ttl: int | None = None) -> None:
        self.set_records(name, dns.rdatatype.AAAA, addresses, ttl)

    def set_ptr(self, name_or_ip: str, *targets: NameLike, ttl: int | None = None) -> None:
        """PTR records; *name_or_ip* may be an IP address (its reverse name is used)."""
        try:
            owner: dns.name.Name = reverse_name(name_or_ip)
        except ValueError:
            owner = to_name(name_or_ip)
        self.set_records(owner, dns.rdatatype.PTR, [to_name(t).to_text() for t in targets], ttl)

    def set_mx(
        self, name: NameLike, *exchanges: tuple[int, NameLike], ttl: int | None = None
    ) -> None:
        """MX records as ``(preference, exchange)`` pairs."""
        self.set_records(
            name,
            dns.rdatatype.MX,
            [f"{pref} {to_name(host).to_text()}" for pref, host in exchanges],
            ttl,
        )

    def set_cname(self, name: NameLike, target: NameLike, ttl: int | None = None) -> None:
        """Make *name* an alias (removes its other records)."""
        self.set_records(name, dns.rdatatype.CNAME, [to_name(target).to_text()], ttl)

    def remove(self, name: NameLike, rdtype: RdtypeLike | None = None) -> None:
        """Remove *name*'s records of *rdtype*, or all of them (then the name is NXDOMAIN)."""
        owner = to_name(name)
        with self._lock:
            node = self._zone.get(owner)
            if node is None:
                return
            if rdtype is None:
                node.clear()
            else:
                node.pop(_to_rdtype(rdtype), None)
            if not node:
                del self._zone[owner]

    def set_drop(self, name: NameLike, drop: bool = True) -> None:
        """Drop (never answer) every query for *name*, of any type; ``drop=False`` undoes."""
        owner = to_name(name)
        with self._lock:
            if drop:
                self._drop.add(owner)
            else:
                self._drop.discard(owner)

    def set_silent(self, silent: bool = True) -> None:
        """Drop every query, of any name and type (logged, never answered); False undoes."""
        with self._lock:
            self._silent = silent

    def set_rcode(self, name: NameLike, rcode: dns.rcode.Rcode | str | None) -> None:
        """Answer every query for *name* with this rcode (e.g. ``"SERVFAIL"``); None undoes."""
        owner = to_name(name)
        with self._lock:
            if rcode is None:
                self._rcodes.pop(owner, None)
            else:
                self._rcodes[owner] = (
                    dns.rcode.from_text(rcode) if isinstance(rcode, str) else rcode
                )

    def clear(self) -> None:
        """Forget every record, drop and rcode override, and silence (the query log stays)."""
        with self._lock:
            self._zone.clear()
            self._drop.clear()
            self._rcodes.clear()
            self._silent = False

    def records(self, name: NameLike, rdtype: RdtypeLike) -> list[dns.rdata.Rdata]:
        """The records held for *name* and *rdtype* (empty when none)."""
        with self._lock:
            rrset = self._zone.get(to_name(name), {}).get(_to_rdtype(rdtype))
            return list(rrset) if rrset is not None else []

    def txt_strings(self, name: NameLike) -> list[tuple[bytes, ...]]:
        """The character-strings of each TXT record held for *name*."""
        return [
            tuple(rd.strings)
            for rd in self.records(name, dns.rdatatype.TXT)
            if isinstance(rd, dns.rdtypes.ANY.TXT.TXT)
        ]

    # ------------------------------------------------------------- query log

    @property
    def queries(self) -> list[QueryLogEntry]:
        """A copy of the query log, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_queries(self) -> None:
        with self._lock:
            self._log.clear()

    def query_count(self, name: NameLike | None = None, rdtype: RdtypeLike | None = None) -> int:
        """How many logged queries match *name* and/or *rdtype* (None matches all)."""
        return len(self._matching(name, rdtype))

    def _matching(self, name: NameLike | None, rdtype: RdtypeLike | None) -> list[QueryLogEntry]:
        want_name = name_text(name) if name is not None else None
        want_type = dns.rdatatype.to_text(_to_rdtype(rdtype)) if rdtype is not None else None
        with self._lock:
            return [
                q
                for q in self._log
                if (want_name is None or q.qname == want_name)
                and (want_type is None or q.qtype == want_type)
            ]

    def wait_for_query(
        self,
        name: NameLike | None = None,
        rdtype: RdtypeLike | None = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[QueryLogEntry]:
        """Block until at least *count* matching queries were logged; TimeoutError if not."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._matching(name, rdtype)
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"DnsServer saw {len(found)} of {count} queries for "
                    f"{name!s} {rdtype!s} within {timeout}s"
                )
            with self._log_changed:
                self._log_changed.wait(min(remaining, 0.5))

    # --------------------------------------------------------------- serving

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        assert self._wake_r is not None
        sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        for udp in self._udp:
            sel.register(udp, selectors.EVENT_READ, ("udp", udp.getsockname()))
        for tcp in self._tcp:
            sel.register(tcp, selectors.EVENT_READ, ("tcp", tcp.getsockname()))
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    kind, listener = key.data
                    if kind == "wake":
                        continue
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        if kind == "udp":
                            self._serve_udp(sock, listener)
                        else:
                            self._accept_tcp(sock, listener)
                    except (BlockingIOError, InterruptedError):
                        pass
                    except Exception as e:  # keep serving; the test can inspect .errors
                        with self._lock:
                            self._errors.append(e)
        finally:
            sel.close()

    def _serve_udp(self, sock: socket.socket, listener: tuple[str, int]) -> None:
        wire, client = sock.recvfrom(65535)
        answer = self._answer(wire, "udp", client, listener)
        if answer is not None:
            sock.sendto(answer, client)

    def _accept_tcp(self, sock: socket.socket, listener: tuple[str, int]) -> None:
        conn, client = sock.accept()
        conn.setblocking(True)
        conn.settimeout(_TCP_IDLE_TIMEOUT)
        t = threading.Thread(
            target=self._serve_tcp_conn,
            args=(conn, client, listener),
            name=f"DnsServer-tcp-{client[1]}",
            daemon=True,
        )
        with self._lock:
            self._conn_socks.add(conn)
            self._conn_threads.add(t)
        t.start()

    def _serve_tcp_conn(
        self, conn: socket.socket, client: tuple[str, int], listener: tuple[str, int]
    ) -> None:
        try:
            while not self._stopping.is_set():
                header = _recv_exact(conn, 2)
                if header is None:
                    return
                (length,) = struct.unpack("!H", header)
                wire = _recv_exact(conn, length)
                if wire is None:
                    return
                answer = self._answer(wire, "tcp", client, listener)
                if answer is not None:
                    conn.sendall(struct.pack("!H", len(answer)) + answer)
        except OSError:
            return
        finally:
            conn.close()
            with self._lock:
                self._conn_socks.discard(conn)
                self._conn_threads.discard(threading.current_thread())

    def _answer(
        self,
        wire: bytes,
        transport: str,
        client: tuple[str, int],
        listener: tuple[str, int],
    ) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None
        response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        entry = QueryLogEntry(
            qname=name_text(question.name),
            qtype=dns.rdatatype.to_text(question.rdtype),
            transport=transport,
            client=(str(client[0]), int(client[1])),
            listener=(str(listener[0]), int(listener[1])),
            edns_payload=query.payload if query.edns >= 0 else None,
            time=time.monotonic(),
        )
        with self._lock:
            self._log.append(entry)
            self._log_changed.notify_all()
            if self._silent or question.name in self._drop:
                return None
        try:
            return self._render(query, response, question.name, question.rdtype, transport)
        except Exception as e:  # a harness bug: answer SERVFAIL and keep it for the test
            with self._lock:
                self._errors.append(e)
            failure = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
            failure.set_rcode(dns.rcode.SERVFAIL)
            return failure.to_wire()

    def _render(
        self,
        query: dns.message.Message,
        response: dns.message.Message,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        transport: str,
    ) -> bytes:
        with self._lock:
            forced = self._rcodes.get(qname)
            if forced is not None:
                response.set_rcode(forced)
            else:
                self._resolve(qname, rdtype, response)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            response.answer = []
        # dnspython would refuse (TooBig) past the client's EDNS size; truncation is ours to do.
        full = response.to_wire(max_size=65535)
        if transport == "udp":
            limit = (
                min(max(query.payload, PLAIN_UDP_LIMIT), EDNS_PAYLOAD)
                if query.edns >= 0
                else PLAIN_UDP_LIMIT
            )
            if len(full) > limit:
                response.answer = []
                response.authority = []
                response.additional = []
                response.flags |= dns.flags.TC
                return response.to_wire()
        return full

    def _resolve(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, response: dns.message.Message
    ) -> None:
        """Fill *response* from the zone (the caller holds the lock)."""
        name = qname
        for _ in range(_MAX_CNAME_HOPS):
            node = self._zone.get(name)
            if node:
                if rdtype == dns.rdatatype.ANY:
                    response.answer.extend(node.values())
                    return
                if rdtype in node:
                    response.answer.append(node[rdtype])
                    return
                cname = node.get(dns.rdatatype.CNAME)
                if cname is not None:
                    response.answer.append(cname)
                    target = next(iter(cname))
                    assert isinstance(target, dns.rdtypes.ANY.CNAME.CNAME)
                    name = target.target
                    continue
                return  # NODATA
            if not self._has_descendant(name):
                response.set_rcode(dns.rcode.NXDOMAIN)
            return

    def _has_descendant(self, name: dns.name.Name) -> bool:
        return any(owner != name and owner.is_subdomain(name) for owner in self._zone)


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _formerr(wire: bytes) -> bytes | None:
    """A bare FORMERR for an unparseable query (None if even the header is missing)."""
    if len(wire) < 12:
        return None
    (qid, flags) = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    return struct.pack("!HHHHHH", qid, dns.flags.QR | int(dns.rcode.FORMERR), 0, 0, 0, 0)
