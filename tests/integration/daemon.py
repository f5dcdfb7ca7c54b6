"""Run `reputable milter` as a real process for the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from reputable.log import parse_logfmt

READY_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


@dataclass
class MilterDaemon:
    """A `reputable milter` process with its own config file and log file."""

    workdir: Path
    keys: Path
    domains: list[str]
    dns: tuple[str, int]  # [dns] nameservers: the test DNS server, never the system's
    algorithms: list[str] = field(default_factory=lambda: ["rsa-sha256"])
    canonicalization: str = "relaxed/relaxed"
    internal_hosts: list[str] = field(default_factory=lambda: ["127.0.0.1/32", "::1"])
    port: int = field(default_factory=free_port)
    listen: str = ""  # libmilter form; empty: inet on 127.0.0.1:<port>
    # A unix socket's permissions: by default anyone may connect (tests that are not about them).
    socket_group: str = ""
    socket_mode: str = "0666"
    extra: str = ""  # more TOML sections for the config file
    # The gate only logs by default here: signing tests are not about the host's reputation.
    mode: str = "monitor"
    milter_timeout: str = ""  # [milter] timeout; empty: the default
    sending_ips: list[str] = field(default_factory=lambda: ["192.0.2.25"])
    helo_name: str = "mta.example.com"
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "reputable.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "milter.log"

    @property
    def libmilter_socket(self) -> str:
        return self.listen or f"inet:{self.port}@127.0.0.1"

    @property
    def postfix_socket(self) -> str:
        kind, _, rest = self.libmilter_socket.partition(":")
        if kind == "unix":
            return self.libmilter_socket
        port, _, host = rest.partition("@")
        return f"inet:[{host}]:{port}" if kind == "inet6" else f"inet:{host}:{port}"

    def write_config(self) -> None:
        self.config_path.write_text(
            "[milter]\n"
            f'socket = "{self.libmilter_socket}"\n'
            f'socket_group = "{self.socket_group}"\n'
            f'socket_mode = "{self.socket_mode}"\n'
            f'mode = "{self.mode}"\n'
            + (f'timeout = "{self.milter_timeout}"\n' if self.milter_timeout else "")
            + "[signing]\n"
            f"domains = {toml_list(self.domains)}\n"
            f'keys = "{self.keys}"\n'
            f"algorithms = {toml_list(self.algorithms)}\n"
            f'canonicalization = "{self.canonicalization}"\n'
            "[trust]\n"
            f"internal_hosts = {toml_list(self.internal_hosts)}\n"
            "[host]\n"
            f"sending_ips = {toml_list(self.sending_ips)}\n"
            f'helo_name = "{self.helo_name}"\n'
            + f'[dns]\nnameservers = ["{self.dns[0]}:{self.dns[1]}"]\ntimeout = "1s"\n'
            + "[log]\n"
            f'target = "{self.log_path}"\n'
            'level = "debug"\n' + self.extra
        )

    def start(self, env: dict[str, str] | None = None) -> MilterDaemon:
        self.write_config()
        env = {**os.environ, "REPUTABLE_CONFIG": str(self.config_path), **(env or {})}
        with (self.workdir / "stderr.txt").open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reputable", "milter"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.wait_for_event("start")
        return self

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            stderr = (self.workdir / "stderr.txt").read_text(errors="replace")
            raise RuntimeError(f"milter exited with {self.process.returncode}: {stderr}")

    def lines(self) -> list[dict[str, str]]:
        if not self.log_path.exists():
            return []
        return [
            parse_logfmt(line) for line in self.log_path.read_text(errors="replace").splitlines()
        ]

    def message_lines(self) -> list[dict[str, str]]:
        return [line for line in self.lines() if "action" in line]

    def wait_for_event(self, event: str, count: int = 1) -> list[dict[str, str]]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            found = [line for line in self.lines() if line.get("event") == event]
            if len(found) >= count:
                return found
            self._check_alive()
            time.sleep(0.05)
        raise TimeoutError(f"no event={event} (x{count}) in {self.log_path}")

    def wait_for_messages(self, count: int) -> list[dict[str, str]]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            found = self.message_lines()
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"fewer than {count} message lines in {self.log_path}")

    def reload(self) -> None:
        assert self.process is not None
        before = len(
            [line for line in self.lines() if line.get("event") in ("reloaded", "reload_failed")]
        )
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            done = [
                line for line in self.lines() if line.get("event") in ("reloaded", "reload_failed")
            ]
            if len(done) > before:
                return
            self._check_alive()
            time.sleep(0.05)
        raise TimeoutError("no reload")

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode
