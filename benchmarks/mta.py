"""Postfix, its load generator and its sinks, all on loopback.

* :class:`CountingSink`: Postfix's ``smtp-sink`` (``-c``: it prints running
  counters, read here to know when every message arrived), where the relayed
  mail goes.
* A sample of the messages goes instead to the integration tests' Python
  :class:`SmtpSink`, which keeps them byte for byte for the DKIM verifiers:
  ``smtp-source -N`` numbers its recipients (``1bob@sink.test``,
  ``2bob@...``) and a ``transport_maps`` regexp sends number 1 and every
  50th (the numbers ending in 00 or 50) to the Python sink.
* :func:`smtp_source`: Postfix's own ``smtp-source``, N messages in S
  parallel sessions (one message per SMTP session).
* :func:`latency_client`: a small SMTP client of ours, one session at a time,
  timing each message from the final ``.`` of DATA to the 250 reply.
* :func:`start_postfix`: the integration tests' :class:`PostfixInstance`,
  with ``smtpd_milters`` pointing at the milter under test and the sampling
  transport map.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.milters import free_port
from benchmarks.world import MAIL_FROM, RCPT_DOMAIN
from tests.integration.harness.postfix import PostfixInstance
from tests.integration.harness.sink import SmtpSink

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
RCPT_LOCAL = "bob"
SAMPLE_EVERY = 50
_MESG = re.compile(rb"mesg=(\d+)")


def sampled(number: int) -> bool:
    """Whether recipient number *number* goes to the Python sink (the transport map's rule)."""
    return number == 1 or number % SAMPLE_EVERY == 0


def transport_map(sample_port: int) -> str:
    # Number 1 and every multiple of 50 (ends in 00 or 50): the sample.
    return (
        f"/^(1|[0-9]*[05]0){RCPT_LOCAL}@{re.escape(RCPT_DOMAIN)}$/ smtp:[127.0.0.1]:{sample_port}\n"
    )


class CountingSink:
    """``smtp-sink -c`` on 127.0.0.1; :meth:`count` is the number of messages received."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.output = workdir / "smtp-sink.out"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> CountingSink:
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [SMTP_SINK, "-c", "-u", "postfix", f"127.0.0.1:{self.port}", "1024"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(self.address, timeout=1) as probe:
                    probe.recv(100)
                    probe.sendall(b"QUIT\r\n")
                break
            except OSError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = self.output.read_text()
                    raise RuntimeError(f"smtp-sink did not start: {output}") from exc
                time.sleep(0.05)
        return self

    def count(self) -> int:
        try:
            with self.output.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 256))
                tail = f.read()
        except OSError:
            return 0
        found = _MESG.findall(tail)
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Sinks:
    counting: CountingSink
    sample: SmtpSink

    def received(self) -> int:
        return self.counting.count() + len(self.sample.messages)

    def wait_for(self, total: int, timeout: float) -> float:
        """Poll until *total* messages arrived in all; the monotonic time it happened."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if self.received() >= total:
                return now
            if now > deadline:
                raise TimeoutError(f"{self.received()} of {total} messages arrived in {timeout}s")
            time.sleep(0.005)


def start_postfix(
    sinks: Sinks, milter: str | None, workdir: Path, base_dir: Path | None = None
) -> PostfixInstance:
    """A Postfix instance relaying to smtp-sink, the sample to the Python sink."""
    transport = workdir / "transport.regexp"
    transport.write_text(transport_map(sinks.sample.port))
    transport.chmod(0o644)
    past = time.time() - 60
    os.utime(transport, (past, past))
    instance = PostfixInstance(
        sinks.counting.address,
        milter=milter,
        overrides={"transport_maps": f"regexp:{transport}"},
        base_dir=base_dir,
    )
    return instance.start(banner_probe=False)


@dataclass
class SourceRun:
    messages: int
    seconds: float
    """From start to smtp-source's exit: every message accepted (250 to DATA)."""
    started: float
    ended: float


def smtp_source(
    address: tuple[str, int], message_file: Path, messages: int, sessions: int, timeout: float
) -> SourceRun:
    """Run Postfix's smtp-source; raise with its output if it fails."""
    argv = [
        SMTP_SOURCE,
        "-N",
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-F",
        str(message_file),
        "-f",
        MAIL_FROM,
        "-t",
        f"{RCPT_LOCAL}@{RCPT_DOMAIN}",
        "-M",
        "client.bench.test",
        f"{address[0]}:{address[1]}",
    ]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    ended = time.monotonic()
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        raise RuntimeError(f"smtp-source exited {proc.returncode}: {output.strip()}")
    return SourceRun(messages, ended - started, started, ended)


def write_source_file(message: bytes, path: Path) -> None:
    """smtp-source -F reads LF lines and sends them with CRLF, dot-stuffing them itself."""
    path.write_bytes(message.replace(b"\r\n", b"\n"))


def dot_stuffed(message: bytes) -> bytes:
    """The DATA payload: CRLF, leading dots doubled, ending in CRLF (without the final dot)."""
    data = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


@dataclass
class LatencyRun:
    messages: int
    seconds: float
    eod_s: list[float] = field(default_factory=list)
    """Per message: the final "." sent to the 250 reply read."""
    session_s: list[float] = field(default_factory=list)
    """Per message: connect to QUIT's reply."""


class SmtpClientError(RuntimeError):
    pass


def _reply(sock: socket.socket, buffer: bytearray) -> bytes:
    """Read one (possibly multi-line) SMTP reply from *sock*."""
    while True:
        start = 0
        end = buffer.find(b"\r\n")
        while end >= 0:
            if end - start >= 3 and buffer[start + 3 : start + 4] != b"-":
                reply = bytes(buffer[: end + 2])
                del buffer[: end + 2]
                return reply
            start = end + 2
            end = buffer.find(b"\r\n", start)
        chunk = sock.recv(65536)
        if not chunk:
            raise SmtpClientError("connection closed by the server")
        buffer += chunk


def _expect(sock: socket.socket, buffer: bytearray, code: bytes, stage: str) -> bytes:
    reply = _reply(sock, buffer)
    if not reply.startswith(code):
        raise SmtpClientError(f"{stage}: {reply.decode('utf-8', 'replace').strip()}")
    return reply


def latency_client(
    address: tuple[str, int], message: bytes, messages: int, timeout: float = 60.0
) -> LatencyRun:
    """Send *messages* one after another, one SMTP session each; time DATA's end to 250."""
    payload = dot_stuffed(message)
    run = LatencyRun(messages, 0.0)
    started = time.perf_counter()
    for number in range(1, messages + 1):
        begun = time.perf_counter()
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffer = bytearray()
            _expect(sock, buffer, b"220", "banner")
            sock.sendall(b"EHLO client.bench.test\r\n")
            _expect(sock, buffer, b"250", "EHLO")
            sock.sendall(f"MAIL FROM:<{MAIL_FROM}>\r\n".encode())
            _expect(sock, buffer, b"250", "MAIL")
            sock.sendall(f"RCPT TO:<{number}{RCPT_LOCAL}@{RCPT_DOMAIN}>\r\n".encode())
            _expect(sock, buffer, b"250", "RCPT")
            sock.sendall(b"DATA\r\n")
            _expect(sock, buffer, b"354", "DATA")
            sock.sendall(payload)
            eod = time.perf_counter()
            sock.sendall(b".\r\n")
            _expect(sock, buffer, b"250", "end of DATA")
            run.eod_s.append(time.perf_counter() - eod)
            sock.sendall(b"QUIT\r\n")
            _expect(sock, buffer, b"221", "QUIT")
        run.session_s.append(time.perf_counter() - begun)
    run.seconds = time.perf_counter() - started
    return run
