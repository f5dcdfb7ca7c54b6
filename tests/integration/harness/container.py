"""A fresh Debian 12 machine for the package tests: mmdebstrap, booted by systemd-nspawn.

The root is made by ``mmdebstrap --variant=apt bookworm`` from this host's
apt sources, with the packages a Debian 12 mail server has (systemd,
Postfix). ``systemd-nspawn --boot`` then runs its own systemd as PID 1, so
the package's maintainer scripts, ``systemctl``, the unit's sandboxing,
``Type=notify`` and the journal are all real. The container shares the
host's network: its Postfix and the host's test DNS server and SMTP sink
meet on loopback. Commands run inside it through ``nsenter`` into the
container's namespaces, with a clean environment.

Found on this machine kind (no systemd on the host, full capabilities):
``--register=no`` (there is no machined to register with) and
``--keep-unit`` (no systemd to ask for a scope) make nspawn work.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from .service import Service

SOURCES = "/etc/apt/sources.list.d/debian.sources"
ENVIRONMENT = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}


class ContainerError(RuntimeError):
    """The container could not be made, booted or asked something."""


def _require(program: str, package: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise ContainerError(f"{program} is missing: apt-get install {package} (Makefile)")
    return found


class DebianContainer(Service):
    """A Debian 12 root in *directory*, booted with systemd; ``run`` executes shell commands in it."""

    def __init__(self, directory: Path, include: Sequence[str]) -> None:
        self.directory = directory
        self.root = directory / "root"
        self.include = tuple(include)
        self.console = directory / "console.log"
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.create_s = 0.0

    def create(self) -> None:
        """mmdebstrap the root (Postfix preseeded as an Internet site, as an admin would)."""
        mmdebstrap = _require("mmdebstrap", "mmdebstrap")
        started = time.monotonic()
        # Debconf answers land before the packages that ask them are configured.
        preseed = (
            'printf "%s\\n" "postfix postfix/main_mailer_type select Internet Site" '
            '"postfix postfix/mailname string example.com" '
            '| chroot "$1" debconf-set-selections'
        )
        done = subprocess.run(
            [
                mmdebstrap,
                "--variant=apt",
                # A machine in use has its package lists: `apt install ./x.deb` needs them.
                "--skip=cleanup/apt/lists",
                "--include=" + ",".join(("debconf", *self.include)),
                f"--essential-hook={preseed}",
                "bookworm",
                str(self.root),
                SOURCES,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise ContainerError(f"mmdebstrap failed:\n{done.stderr[-4000:]}")
        self.create_s = time.monotonic() - started

    def start(self, timeout: float = 90.0) -> Self:
        nspawn = _require("systemd-nspawn", "systemd-container")
        with self.console.open("wb") as console:
            self._nspawn = subprocess.Popen(
                [
                    nspawn,
                    "--register=no",
                    "--keep-unit",
                    "--boot",
                    "--quiet",
                    "--directory",
                    str(self.root),
                    "--resolv-conf=copy-host",
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            self.leader = self.leader or self._find_leader()
            if self.leader and self._system_state() in ("running", "degraded"):
                return self
            time.sleep(0.2)
        waiting = self._pending_jobs() if self.leader else "(systemd never started)"
        self.stop()
        raise ContainerError(
            f"no booted system after {timeout}s; jobs still waiting:\n{waiting}\n"
            f"console:\n{self.console_text()}"
        )

    def _check_alive(self) -> None:
        assert self._nspawn is not None
        if self._nspawn.poll() is not None:
            raise ContainerError(f"systemd-nspawn exited:\n{self.console_text()}")

    def _find_leader(self) -> int:
        """The container's PID 1 as the host sees it: nspawn's child running systemd."""
        assert self._nspawn is not None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == self._nspawn.pid and "systemd" in stat[: stat.rindex(")")]:
                return int(entry.name)
        return 0

    def _pending_jobs(self) -> str:
        try:
            done = self.run("systemctl list-jobs --no-pager", check=False, timeout=10)
        except (ContainerError, subprocess.TimeoutExpired) as exc:
            return f"(cannot ask: {exc})"
        return done.stdout.strip()

    def _system_state(self) -> str:
        done = self.run("systemctl is-system-running", check=False, timeout=10)
        return done.stdout.strip()

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def run(
        self,
        command: str,
        *,
        check: bool = True,
        timeout: float = 120.0,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside the booted container, as root, in /root."""
        if not self.leader:
            raise ContainerError("the container is not running")
        done = subprocess.run(
            [
                "nsenter",
                "--target",
                str(self.leader),
                "--all",
                "env",
                "-i",
                *(f"{k}={v}" for k, v in ENVIRONMENT.items()),
                "sh",
                "-c",
                f"cd /root && {command}",
            ],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise ContainerError(
                f"`{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def path(self, inside: str) -> Path:
        """A path inside the container, as the host sees it."""
        return self.root / inside.lstrip("/")

    def stop(self, timeout: float = 60.0) -> None:
        """Shut the container down (nspawn passes SIGTERM on as a clean poweroff)."""
        if self._nspawn is None or self._nspawn.poll() is not None:
            return
        self._nspawn.send_signal(signal.SIGTERM)
        try:
            self._nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self._nspawn.pid, signal.SIGKILL)
            self._nspawn.wait(10)
        self.leader = 0

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
