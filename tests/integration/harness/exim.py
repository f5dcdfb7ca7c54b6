"""A real Exim 4.96 from Debian, unpacked beside Postfix, run from its own configuration.

`exim4-daemon-light` conflicts with `postfix` as an installed package, so the
binary is fetched with `apt-get download` and unpacked with `dpkg-deb -x`
into a cache directory (once per machine). It needs `libidn12` (installed by
`make test`) and looks up its compiled-in user, Debian-exim, at every start:
the user is made here when missing, as Debian's exim4-base would.

An `EximInstance` listens on a loopback port, keeps its spool and logs in a
work directory Debian-exim may enter, and relays everything to one SMTP
destination (the test sink) with the transport lines the README gives.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.daemon import free_port

CACHE = Path("/var/cache/reputable-tests/exim")
PACKAGES = ("exim4-daemon-light", "exim4-base")
USER = "Debian-exim"
START_TIMEOUT_S = 20.0


class EximUnavailable(RuntimeError):
    pass


def exim_binary() -> Path:
    """The unpacked /usr/sbin/exim4, fetched and unpacked on first use."""
    binary = CACHE / "root" / "usr" / "sbin" / "exim4"
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as download:
        done = subprocess.run(
            ["apt-get", "download", *PACKAGES],
            cwd=download,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        debs = sorted(Path(download).glob("*.deb"))
        if done.returncode != 0 or len(debs) != len(PACKAGES):
            raise EximUnavailable(f"apt-get download {' '.join(PACKAGES)}: {done.stderr[-500:]}")
        unpacked = Path(download) / "root"
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, timeout=120)
        os.replace(unpacked, CACHE / "root")
    return binary


def ensure_user() -> None:
    """Debian-exim, the user (and group) the binary was built to run deliveries as."""
    found = subprocess.run(["getent", "passwd", USER], capture_output=True, check=False)
    if found.returncode == 0:
        return
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            USER,
        ],
        check=True,
        timeout=60,
    )


@dataclass
class EximInstance:
    """One Exim daemon: its configuration, spool and logs under `workdir`."""

    workdir: Path  # Debian-exim must be able to enter every directory above it
    keys: Path  # reputable's key store
    relay: tuple[str, int]  # where all mail goes (the test sink)
    gate_socket: Path | None = None  # reputable's [exim] socket: the README's ACL stanza
    transport: str = ""  # the transport's signing lines; "": the README's native DKIM lines
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "exim.conf"

    @property
    def mainlog(self) -> Path:
        return self.workdir / "log" / "mainlog"

    def write_config(self) -> None:
        spool, log = self.workdir / "spool", self.workdir / "log"
        for directory in (spool, log):
            directory.mkdir(parents=True, exist_ok=True)
            subprocess.run(["chown", f"{USER}:{USER}", str(directory)], check=True)
        keys = self.keys
        self.config_path.write_text(
            f"exim_path = {exim_binary()}\n"  # it runs itself again for deliveries
            "tls_advertise_hosts =\n"
            f"exim_user = {USER}\n"
            f"exim_group = {USER}\n"
            "keep_environment =\n"
            f"spool_directory = {spool}\n"
            f"log_file_path = {log}/%slog\n"
            "primary_hostname = mta.example.com\n"
            f"daemon_smtp_ports = {self.port}\n"
            "local_interfaces = 127.0.0.1\n"
            "acl_smtp_rcpt = acl_check_rcpt\n"
            "acl_smtp_data = acl_check_data\n"
            + ("acl_not_smtp = acl_check_data\n" if self.gate_socket else "")
            + "begin acl\n"
            "acl_check_rcpt:\n"
            "  accept\n"
            "acl_check_data:\n" + readme_acl_lines(self.gate_socket) + "  accept\n"
            "begin routers\n"
            "relay_all:\n"
            "  driver = manualroute\n"
            f"  route_list = * {self.relay[0]} byname\n"
            "  transport = remote_smtp\n"
            "  self = send\n"
            "begin transports\n"
            "remote_smtp:\n"
            "  driver = smtp\n"
            f"  port = {self.relay[1]}\n"
            "  hosts_avoid_tls = *\n"
            + (self.transport or readme_transport_lines(keys))
            + "begin retry\n"
            "* * F,1m,10s\n"
        )

    def start(self) -> EximInstance:
        self.write_config()
        with (self.workdir / "stderr.txt").open("wb") as stderr:
            self.process = subprocess.Popen(
                [str(exim_binary()), "-C", str(self.config_path), "-bdf", "-q30s"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise EximUnavailable(f"exim did not start:\n{self.logs()}") from None
                time.sleep(0.1)

    def logs(self) -> str:
        """Exim's own logs (main, reject, panic) and its standard error, for a failure's message."""
        parts = [
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted((self.workdir / "log").glob("*log"))
        ]
        errors = self.workdir / "stderr.txt"
        if errors.exists():
            parts.append(f"--- stderr ---\n{errors.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def queue(self) -> str:
        """`exim -bp`: the messages in the queue, frozen ones marked "*** frozen ***"."""
        done = subprocess.run(
            [str(exim_binary()), "-C", str(self.config_path), "-bp"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    def submit_local(self, message: bytes, sender: str, recipients: list[str]) -> None:
        """`exim -bm`: a local submission (as sendmail does), delivered at once (-odi)."""
        subprocess.run(
            [str(exim_binary()), "-C", str(self.config_path), "-odi", "-f", sender, *recipients],
            input=message,
            check=True,
            timeout=60,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def readme_acl_lines(socket: Path | None) -> str:
    """The README's ACL stanza for the gate, asking `socket` ("" without a gate)."""
    if socket is None:
        return ""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split("# the reputation gate, first in acl_smtp_data\n", 1)[1]
    return block.split("```", 1)[0].replace("/run/reputable/exim.sock", str(socket))


def readme_transport_lines(keys: Path, title: str = "reputable's keys") -> str:
    """The DKIM lines of the README's Exim section (the block titled `title`), for a key
    store at `keys`."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split(f"# the remote_smtp transport, {title}\n", 1)[1]
    lines = block.split("```", 1)[0]
    return lines.replace("/var/lib/reputable/keys", str(keys))
