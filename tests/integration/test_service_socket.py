"""The milter as a service: its unix socket's owner, group and mode, and systemd's notifications.

The socket set-up is the README's: inside Postfix's queue directory, group
postfix, mode 0660, reached by a chrooted smtpd as `unix:reputable/milter.sock`.
Users who are not in group postfix are refused by the kernel. The
notifications are read from a `NOTIFY_SOCKET` of the test's own, as systemd
would read them.
"""

from __future__ import annotations

import grp
import io
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reputable.config import Config, SigningConfig
from reputable.keys.commands import new_command
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix import PostfixInstance
from tests.integration.harness.sink import SmtpSink

PYTHON = "/usr/bin/python3"
CONNECT = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    config = Config(signing=SigningConfig(domains=("example.com",), keys=keys))
    assert new_command(config, "example.com", "r1", "rsa", 2048, False, out=io.StringIO()) == 0
    return keys


def connect_as(user: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Connect to the socket as *user* with only that user's primary group (setpriv)."""
    account = pwd.getpwnam(user)
    return subprocess.run(
        [
            *("setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}"),
            *("--clear-groups", PYTHON, "-c", CONNECT, str(path)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def message() -> tuple[str, bytes]:
    message_id = f"{uuid.uuid4()}@example.com"
    data = (
        "From: Alice <alice@example.com>\r\nTo: bob@example.test\r\nSubject: socket\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\nHello.\r\n"
    )
    return message_id, data.encode()


def test_the_readme_unix_socket_reaches_a_chrooted_smtpd_and_nobody_else(
    tmp_path: Path, keys: Path, dns_server: DnsServer, smtp_sink: SmtpSink
) -> None:
    postfix = PostfixInstance(
        smtp_sink.address, milter="unix:reputable/milter.sock", chroot_smtpd=True
    )
    socket_dir = postfix.queue_dir / "reputable"
    path = socket_dir / "milter.sock"
    postfix.queue_dir.mkdir()
    milter = MilterDaemon(
        tmp_path,
        keys,
        ["example.com"],
        dns_server.address,
        listen=f"unix:{path}",
        socket_group="postfix",
        socket_mode="0660",
    ).start()
    try:
        postfix_gid = grp.getgrnam("postfix").gr_gid
        made = socket_dir.stat()
        # The missing directory was made: 0750, setgid in group postfix.
        assert (stat.S_IMODE(made.st_mode), made.st_gid) == (0o2750, postfix_gid)
        info = path.lstat()
        assert stat.S_ISSOCK(info.st_mode)
        assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, postfix_gid)

        refused = connect_as("nobody", path)
        assert refused.returncode != 0
        assert "PermissionError" in refused.stderr, refused.stderr
        allowed = connect_as("postfix", path)
        assert allowed.returncode == 0, allowed.stderr

        postfix.start()
        message_id, data = message()
        reply = postfix.submit_smtp(data, "alice@example.com", ["bob@example.test"])
        received = smtp_sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60)
        assert received.header("DKIM-Signature") is not None
        (line,) = [m for m in milter.message_lines() if m.get("queue_id") == reply.queue_id]
        assert line["dkim"] == "example.com/r1"
        assert "Permission denied" not in postfix.log_text()
    finally:
        postfix.stop()
        assert milter.stop() == 0
    # A clean stop removes the socket file (the directory stays: it is the admin's now).
    assert not path.exists()
    assert socket_dir.is_dir()


def test_an_unknown_socket_group_stops_the_start_with_the_fix(
    tmp_path: Path, keys: Path, dns_server: DnsServer
) -> None:
    milter = MilterDaemon(
        tmp_path,
        keys,
        ["example.com"],
        dns_server.address,
        listen=f"unix:{tmp_path}/run/milter.sock",
        socket_group="no-such-group",
    )
    milter.write_config()
    done = subprocess.run(
        [sys.executable, "-m", "reputable", "milter", "--config", str(milter.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 78, done.stderr
    assert "Traceback" not in done.stderr
    assert f'{milter.config_path}: milter.socket_group = "no-such-group"' in done.stderr
    assert "an existing group" in done.stderr
    assert not (tmp_path / "run" / "milter.sock").exists()


def test_sigint_removes_the_socket_but_not_one_that_replaced_it(
    tmp_path: Path, keys: Path, dns_server: DnsServer
) -> None:
    path = tmp_path / "milter.sock"
    milter = MilterDaemon(
        tmp_path, keys, ["example.com"], dns_server.address, listen=f"unix:{path}"
    )
    milter.start()
    assert milter.process is not None
    milter.process.send_signal(signal.SIGINT)
    assert milter.process.wait(20) == 0
    assert not path.exists()

    (tmp_path / "again").mkdir()
    milter = MilterDaemon(
        tmp_path / "again", keys, ["example.com"], dns_server.address, listen=f"unix:{path}"
    ).start()
    path.unlink()  # someone else's socket now takes the name: the stop must leave it alone
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))
        assert milter.stop() == 0
        assert path.exists()


class NotifySocket:
    """systemd's end of sd_notify: a datagram socket whose messages are kept in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def next(self, timeout: float = 30.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    listener.close()


def test_ready_reloading_and_stopping_reach_the_notify_socket(
    tmp_path: Path, keys: Path, dns_server: DnsServer, notify_socket: NotifySocket
) -> None:
    path = tmp_path / "milter.sock"
    milter = MilterDaemon(
        tmp_path, keys, ["example.com"], dns_server.address, listen=f"unix:{path}"
    )
    milter.start(env={"NOTIFY_SOCKET": str(notify_socket.path)})
    assert milter.process is not None

    ready = notify_socket.next()
    assert ready["READY"] == "1"
    # READY comes only once the socket accepts connections and the keys are loaded.
    assert connect_as("root", path).returncode == 0
    assert "1 keys for example.com" in ready["STATUS"]
    assert [line["event"] for line in milter.lines() if line.get("event") == "start"]

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    milter.process.send_signal(signal.SIGHUP)
    reloading = notify_socket.next()
    assert reloading["RELOADING"] == "1"
    assert before <= int(reloading["MONOTONIC_USEC"])
    assert notify_socket.next()["READY"] == "1"
    assert milter.wait_for_event("reloaded")

    # A reload that fails still ends with READY: the old configuration serves on.
    milter.config_path.write_text(milter.config_path.read_text() + "[nonsense]\n")
    milter.process.send_signal(signal.SIGHUP)
    assert notify_socket.next()["RELOADING"] == "1"
    after_failure = notify_socket.next()
    assert after_failure["READY"] == "1"
    assert "reload failed" in after_failure["STATUS"]

    milter.process.send_signal(signal.SIGTERM)
    assert notify_socket.next()["STOPPING"] == "1"
    assert milter.process.wait(20) == 0
