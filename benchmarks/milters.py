"""The milters under test, each run in the foreground from its own config in a temp dir.

* reputable: ``python -m reputable milter --config FILE`` with every reputation
  check enabled (PTR/FCrDNS, an IP blocklist and a domain blocklist, SPF,
  DMARC, the DKIM records), ``[milter] mode = "enforce"`` and the benchmark's
  DNS server as its only resolver.
* OpenDKIM: ``opendkim -f -x FILE`` (foreground, no system service), signing
  mode, the same RSA PEM (Domain/Selector/KeyFile form; it cannot dual-sign:
  see :func:`opendkim_milter`).
* dkimpy-milter: ``/usr/bin/dkimpy-milter FILE``, which stays in the
  foreground (it never forks; systemd runs it as Type=simple), signing mode,
  the same PEM (and the same Ed25519 key as its base64 seed).
* header-only: ``python -m benchmarks.header_only_milter SOCKET``, which adds
  one header field and signs nothing: the most any milter can reach.

All three sign relaxed/relaxed, trust 127.0.0.1 (where Postfix's smtpd says
the client is), and write no syslog.  A unix socket is made 0666 (Postfix's
smtpd runs as the ``postfix`` user and must connect to it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.world import (
    DNSBL_ZONE,
    DOMAIN,
    DOMAIN_DNSBL_ZONE,
    ED25519_SELECTOR,
    HELO,
    RSA_SELECTOR,
    SENDING_IP,
    Keys,
)
from reputable.log import parse_logfmt

OPENDKIM = "/usr/sbin/opendkim"
DKIMPY_MILTER = "/usr/bin/dkimpy-milter"
HEADER_ONLY = "header-only"
MILTERS = ("reputable", "opendkim", "dkimpy-milter", HEADER_ONLY)
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Endpoint:
    """Where one milter listens, in each program's own spelling."""

    kind: str  # "unix" or "tcp"
    path: Path | None = None
    port: int = 0

    @classmethod
    def make(cls, kind: str, workdir: Path) -> Endpoint:
        if kind == "unix":
            return cls("unix", path=workdir / "milter.sock")
        return cls("tcp", port=free_port())

    @property
    def libmilter(self) -> str:
        """libmilter's form, which reputable and pymilter take: unix:/path or inet:PORT@HOST."""
        return f"unix:{self.path}" if self.kind == "unix" else f"inet:{self.port}@127.0.0.1"

    @property
    def local(self) -> str:
        """OpenDKIM's and dkimpy-milter's form: local:/path or inet:PORT@HOST."""
        return f"local:{self.path}" if self.kind == "unix" else f"inet:{self.port}@127.0.0.1"

    @property
    def postfix(self) -> str:
        """What smtpd_milters says."""
        return f"unix:{self.path}" if self.kind == "unix" else f"inet:127.0.0.1:{self.port}"

    def listening(self) -> bool:
        if self.kind == "unix":
            assert self.path is not None
            return _unix_listening(str(self.path))
        return _tcp_listening(self.port)


def _unix_listening(path: str) -> bool:
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        # Flags 00010000 is __SO_ACCEPTCON: a listening socket.
        if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & 0x10000:
            return True
    return False


def _tcp_listening(port: int) -> bool:
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1] == wanted and fields[3] == "0A":
            return True
    return False


@dataclass
class MilterProcess:
    name: str
    endpoint: Endpoint
    workdir: Path
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def label(self) -> str:
        return f"{self.name} ({self.endpoint.kind})"

    def start(self) -> MilterProcess:
        out = (self.workdir / "stdout.txt").open("wb")
        err = (self.workdir / "stderr.txt").open("wb")
        with out, err:
            self.process = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.endpoint.listening():
            self.check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.label} does not listen after {READY_TIMEOUT_S}s")
            time.sleep(0.05)
        return self

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            stderr = (self.workdir / "stderr.txt").read_text(errors="replace")
            raise RuntimeError(f"{self.label} exited with {self.process.returncode}: {stderr}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_lines(self) -> list[dict[str, str]]:
        if self.log_path is None or not self.log_path.exists():
            return []
        return [
            parse_logfmt(line)
            for line in self.log_path.read_text(errors="replace").splitlines()
            if line.strip()
        ]


def prepare(workdir: Path, kind: str) -> Endpoint:
    """A milter's own directory (world-readable: Postfix reaches its socket) and endpoint."""
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    return Endpoint.make(kind, workdir)


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def reputable_milter(
    workdir: Path,
    kind: str,
    keys: Keys,
    dns: tuple[str, int],
    dual_sign: bool,
    extra: str = "",
) -> MilterProcess:
    endpoint = prepare(workdir, kind)
    nameserver = f"{dns[0]}:{dns[1]}"
    algorithms = ["rsa-sha256", "ed25519-sha256"] if dual_sign else ["rsa-sha256"]
    log = workdir / "milter.log"
    config = workdir / "reputable.toml"
    config.write_text(
        "[milter]\n"
        f'socket = "{endpoint.libmilter}"\n'
        'socket_mode = "0666"\n'
        'mode = "enforce"\n'
        "[signing]\n"
        f'domains = ["{DOMAIN}"]\n'
        f'keys = "{keys.store}"\n'
        f"algorithms = {_toml_list(algorithms)}\n"
        'canonicalization = "relaxed/relaxed"\n'
        "[trust]\n"
        'internal_hosts = ["127.0.0.1/32"]\n'
        "[host]\n"
        f'sending_ips = ["{SENDING_IP}"]\n'
        f'helo_name = "{HELO}"\n'
        "[checks]\n"
        f'dnsbl = ["{DNSBL_ZONE}"]\n'
        f'dnsbl_domains = ["{DOMAIN_DNSBL_ZONE}"]\n'
        'refresh = "5m"\n'
        "[dns]\n"
        f'nameservers = ["{nameserver}"]\n'
        f'dnsbl_nameservers = ["{nameserver}"]\n'
        'timeout = "1s"\n'
        "[keys]\n"
        f'verify_nameservers = ["{nameserver}"]\n'
        "[log]\n"
        f'target = "{log}"\n'
        'level = "info"\n' + extra
    )
    argv = [sys.executable, "-m", "reputable", "milter", "--config", str(config)]
    return MilterProcess("reputable", endpoint, workdir, argv, log_path=log)


def opendkim_milter(workdir: Path, kind: str, keys: Keys) -> MilterProcess:
    endpoint = prepare(workdir, kind)
    lines = [
        "Syslog no",
        "Mode s",
        f"Socket {endpoint.local}",
        "UMask 000",
        "Canonicalization relaxed/relaxed",
        "InternalHosts 127.0.0.1",
        f"PidFile {workdir / 'opendkim.pid'}",
    ]
    # OpenDKIM 2.11 signs every key with its one SignatureAlgorithm: it cannot dual-sign
    # RSA and Ed25519 (an Ed25519 key in its KeyTable makes it answer 451 "resource
    # unavailable"), so with --dual-sign it still signs with the RSA key only.
    lines += [f"Domain {DOMAIN}", f"Selector {RSA_SELECTOR}", f"KeyFile {keys.rsa_pem}"]
    config = workdir / "opendkim.conf"
    config.write_text("\n".join(lines) + "\n")
    argv = [OPENDKIM, "-f", "-x", str(config)]
    return MilterProcess("opendkim", endpoint, workdir, argv)


def dkimpy_milter(workdir: Path, kind: str, keys: Keys, dual_sign: bool) -> MilterProcess:
    endpoint = prepare(workdir, kind)
    lines = [
        "Syslog no",
        "UMask 0",
        "Mode s",
        f"Socket {endpoint.local}",
        f"Domain {DOMAIN}",
        f"KeyFile {keys.rsa_pem}",
        f"Selector {RSA_SELECTOR}",
        "Canonicalization relaxed/relaxed",
        "InternalHosts 127.0.0.1",
        "UserID root",
    ]
    if dual_sign:
        lines += [f"KeyFileEd25519 {keys.ed25519_seed}", f"SelectorEd25519 {ED25519_SELECTOR}"]
    config = workdir / "dkimpy-milter.conf"
    config.write_text("\n".join(lines) + "\n")
    return MilterProcess("dkimpy-milter", endpoint, workdir, [DKIMPY_MILTER, str(config)])


def header_only_milter(workdir: Path, kind: str) -> MilterProcess:
    """benchmarks/header_only_milter.py: adds one field, signs nothing (the ceiling)."""
    endpoint = prepare(workdir, kind)
    argv = [sys.executable, "-m", "benchmarks.header_only_milter", endpoint.libmilter]
    root = str(Path(__file__).resolve().parent.parent)  # it runs from workdir: find benchmarks/
    return MilterProcess(HEADER_ONLY, endpoint, workdir, argv, env={"PYTHONPATH": root})


def make_milter(
    name: str, workdir: Path, kind: str, keys: Keys, dns: tuple[str, int], dual_sign: bool
) -> MilterProcess:
    if name == "reputable":
        return reputable_milter(workdir, kind, keys, dns, dual_sign)
    if name == "opendkim":
        return opendkim_milter(workdir, kind, keys)
    if name == "dkimpy-milter":
        return dkimpy_milter(workdir, kind, keys, dual_sign)
    if name == HEADER_ONLY:
        return header_only_milter(workdir, kind)
    raise ValueError(f"unknown milter {name!r}")


def stop_all(milters: list[MilterProcess]) -> None:
    for milter in milters:
        with contextlib.suppress(Exception):
            milter.stop()
