"""Real Postfix instances for the integration tests, one config directory each.

An instance lives in its own directory (by default a fresh ``/tmp/reputable-
postfix-*``, mode 0755 so that the ``postfix`` user can reach it)::

    DIR/etc/main.cf, DIR/etc/master.cf   config_directory (``postfix -c DIR/etc``)
    DIR/spool/                            queue_directory (created by postfix itself)
    DIR/data/                             data_directory, owned by mail_owner
    DIR/log/maillog                       maillog_file, written by the postlog service

main.cf relays everything to the caller's SMTP sink (``relayhost =
[127.0.0.1]:PORT``, ``mydestination =`` empty, local delivery disabled), has
smtpd on ``127.0.0.1:<free port>`` and the caller's milter (or none) in both
``smtpd_milters`` and ``non_smtpd_milters``.  master.cf is written from
scratch with every service unchrooted (chroot column ``n``), so nothing has
to be copied into the queue directory.

What Postfix needs when run this way, found on Debian 12 (Postfix 3.7) with
the package installed preseeded to "No configuration" (no /etc/postfix/main.cf,
no /etc/mailname, no system instance):

* Nothing global.  As root, ``postfix -c``, ``postqueue -c``, ``postsuper -c``
  and ``sendmail -C`` accept a non-default config directory without it being
  listed in ``alternate_config_directories`` (that check applies only when
  the effective uid is not 0), so /etc/postfix/main.cf is neither needed nor
  created.  Meta files come from the package's /etc/postfix (meta_directory);
  /etc/mailname is not read because myhostname and myorigin are set here.
* ``postfix start`` runs ``post-install create-missing`` which creates the
  queue directories with the right owners from ``postfix-files``; the data
  directory has to be created here and owned by ``mail_owner``
  (``postfix``), or the master cannot take its lock.
* The config directory must not contain the queue directory (``postfix
  check`` then warns about every queue directory not being owned by root).
* ``maillog_file`` must start with one of ``maillog_file_prefixes`` (default
  ``/var, /dev/stdout``), so that list is set to the instance's log directory.
* ``smtpd_peername_lookup = no`` by default: otherwise smtpd asks the system
  resolver for the PTR of 127.0.0.2 and the like, i.e. DNS outside the test.
  The milter then sees the client name ``[127.0.0.2]`` (override to change).
* ``smtpd_error_sleep_time = 0``: rejections are not delayed by a second.

* Postfix treats a config file modified less than a second ago as "hot" and
  re-reads it every 300 ms until it is not (util/load_file.c), so every
  command right after writing main.cf took ~2 s; the files are backdated.

Nothing outside the instance directory is written.  :meth:`PostfixInstance.stop`
does what ``postfix -c DIR stop`` does (SIGTERM to the master, a session
leader whose process group holds every Postfix process of the instance) but
polls for the processes to go instead of sleeping whole seconds, and kills
whatever is left at the deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

from .service import Service
from .sink import wait_for_banner

POSTFIX = "/usr/sbin/postfix"
SENDMAIL = "/usr/sbin/sendmail"
POSTQUEUE = "/usr/sbin/postqueue"
POSTSUPER = "/usr/sbin/postsuper"
POSTCONF = "/usr/sbin/postconf"

DEFAULT_HOSTNAME = "mta.example.com"
MESSAGE_SIZE_LIMIT = 64 * 1024 * 1024

MILTER_CONNECT_MACROS = (
    "j {daemon_name} {daemon_addr} v _ {client_addr} {client_name} {client_port} {client_ptr}"
)
MILTER_MAIL_MACROS = (
    "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer} "
    "{client_addr} {client_name}"
)

# Every service unchrooted, no local/virtual/lmtp/pipe delivery, no TLS manager.
_MASTER_SERVICES = """\
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """Postfix could not be set up, started or asked something."""


class SmtpSubmitError(Exception):
    """The Postfix smtpd refused a submission (or dropped the connection: code 0)."""

    def __init__(self, stage: str, code: int, message: str) -> None:
        super().__init__(f"SMTP {stage} refused: {code} {message}")
        self.stage = stage
        self.code = code
        self.message = message


class SendmailError(Exception):
    """Postfix's sendmail exited non-zero."""

    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"sendmail exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class SmtpReply:
    """The final reply to DATA."""

    code: int
    message: str

    @property
    def queue_id(self) -> str | None:
        """The queue ID from Postfix's ``250 2.0.0 Ok: queued as ABC123``."""
        m = re.search(r"queued as (\S+)", self.message)
        return m.group(1) if m else None


@dataclass(frozen=True)
class QueueRecipient:
    address: str
    delay_reason: str | None = None


@dataclass(frozen=True)
class QueueEntry:
    """One message in the queue, from ``postqueue -j``."""

    queue_name: str
    queue_id: str
    sender: str
    recipients: tuple[QueueRecipient, ...]
    arrival_time: int
    message_size: int
    forced_expire: bool = False


class PostfixFactory(Protocol):
    """The ``postfix_factory`` fixture: start an instance relaying to the test sink."""

    def __call__(
        self,
        milter: str | None = None,
        overrides: Mapping[str, str] | None = None,
        *,
        smtpd_options: Mapping[str, str] | None = None,
        relay: tuple[str, int] | None = None,
        banner_probe: bool = True,
    ) -> PostfixInstance: ...


_running: set[PostfixInstance] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    """Last resort when a test run dies before its fixtures' finalizers ran."""
    for instance in list(_running):
        instance.stop(timeout=5)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_listening(address: tuple[str, int], timeout: float) -> None:
    """Poll /proc/net/tcp until a socket listens on the IPv4 *address* (no connection made)."""
    host = socket.inet_aton(address[0])[::-1].hex().upper()  # little-endian, as the kernel shows
    wanted = f"{host}:{address[1]:04X}"
    deadline = time.monotonic() + timeout
    while True:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listens on {address[0]}:{address[1]} after {timeout}s")
        time.sleep(0.02)


def _require(path: str) -> str:
    if not os.access(path, os.X_OK):
        raise PostfixError(
            f"{path} is missing: apt-get install postfix (see TEST_PACKAGES in Makefile)"
        )
    return path


def _process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is *pgid*."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if len(fields) >= 3 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class PostfixInstance(Service):
    """One Postfix instance relaying all mail to ``relay`` (the test sink)."""

    def __init__(
        self,
        relay: tuple[str, int],
        *,
        milter: str | None = None,
        overrides: Mapping[str, str] | None = None,
        smtpd_options: Mapping[str, str] | None = None,
        myhostname: str = DEFAULT_HOSTNAME,
        base_dir: Path | None = None,
        chroot_smtpd: bool = False,
    ) -> None:
        """Prepare (not start) an instance.

        *milter* is a Postfix milter socket string such as ``inet:127.0.0.1:8891``
        or ``unix:/path/sock`` (None: no milter).  *overrides* replace or add
        main.cf settings; *smtpd_options* become ``-o name=value`` on the smtpd
        service in master.cf. *chroot_smtpd* runs smtpd chrooted into the queue
        directory, as Debian's own master.cf does.
        """
        self.relay = relay
        self.milter = milter
        self.overrides = dict(overrides or {})
        self.smtpd_options = dict(smtpd_options or {})
        self.chroot_smtpd = chroot_smtpd
        self.myhostname = myhostname
        parent = str(base_dir) if base_dir is not None else None
        self.directory = Path(tempfile.mkdtemp(prefix="reputable-postfix-", dir=parent))
        self.directory.chmod(0o755)
        self.config_dir = self.directory / "etc"
        self.queue_dir = self.directory / "spool"
        self.data_dir = self.directory / "data"
        self.log_dir = self.directory / "log"
        self.log_path = self.log_dir / "maillog"
        self.smtp_port = 0
        self._started = False
        self._master_pid: int | None = None

    # ----------------------------------------------------------------- config

    @property
    def smtp_address(self) -> tuple[str, int]:
        """Where smtpd listens: ``("127.0.0.1", port)``."""
        return ("127.0.0.1", self.smtp_port)

    def main_cf(self) -> dict[str, str]:
        """The main.cf settings this instance is started with."""
        milters = self.milter or ""
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.log_dir),
            "myhostname": self.myhostname,
            "mydomain": self.myhostname.partition(".")[2] or self.myhostname,
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_transport": "error:local delivery disabled",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[{self.relay[0]}]:{self.relay[1]}",
            "smtp_host_lookup": "native",
            "smtputf8_enable": "yes",
            "message_size_limit": str(MESSAGE_SIZE_LIMIT),
            "mailbox_size_limit": "0",
            "virtual_mailbox_limit": "0",
            "smtpd_peername_lookup": "no",
            "smtpd_error_sleep_time": "0",
            "smtpd_banner": "$myhostname ESMTP test instance",
            "biff": "no",
            "smtpd_milters": milters,
            "non_smtpd_milters": milters,
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
            "milter_connect_macros": MILTER_CONNECT_MACROS,
            "milter_mail_macros": MILTER_MAIL_MACROS,
        }
        settings.update(self.overrides)
        return settings

    def _write_config(self) -> None:
        self.config_dir.mkdir(exist_ok=True)
        self.queue_dir.mkdir(exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        owner = self.main_cf().get("mail_owner", "postfix")
        try:
            pw = pwd.getpwnam(owner)
        except KeyError as e:
            raise PostfixError(
                f"user {owner!r} (mail_owner) is missing: is the postfix package installed?"
            ) from e
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        self.data_dir.chmod(0o700)
        try:
            grp.getgrnam(self.main_cf().get("setgid_group", "postdrop"))
        except KeyError as e:
            raise PostfixError("group postdrop (setgid_group) is missing") from e
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf().items())
        (self.config_dir / "main.cf").write_text(main)
        chroot = "y" if self.chroot_smtpd else "n"
        smtpd = f"127.0.0.1:{self.smtp_port} inet n - {chroot} - - smtpd\n"
        smtpd += "".join(f"  -o {k}={v}\n" for k, v in self.smtpd_options.items())
        (self.config_dir / "master.cf").write_text(smtpd + _MASTER_SERVICES)
        # Postfix re-reads a config file modified within the last second, in
        # 300 ms steps, until it is "cold" (util/load_file.c): ~2 s per command
        # right after writing.  Backdate both files so nothing waits.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.config_dir / name, (past, past))

    # ------------------------------------------------------------------- life

    def _run(
        self, argv: Sequence[str], *, timeout: float = 30, input_bytes: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            list(argv), input=input_bytes, capture_output=True, timeout=timeout, check=False
        )

    def start(self, timeout: float = 30.0, *, banner_probe: bool = True) -> Self:
        """Write the config, ``postfix -c DIR start`` and wait until smtpd is ready.

        Readiness is a connection that reads smtpd's 220 banner and QUITs.  That
        probe is a real SMTP session, so the milter sees one extra connect
        (from 127.0.0.1, no HELO, no mail) right after start; with
        ``banner_probe=False`` readiness is instead the master's listening
        socket showing up in /proc/net/tcp, and the milter sees nothing.
        """
        if self._started:
            raise PostfixError("instance already started")
        _require(POSTFIX)
        last_error = ""
        for _ in range(3):  # a free port may be taken between choosing and binding it
            self.smtp_port = _free_port()
            self._write_config()
            proc = self._run([POSTFIX, "-c", str(self.config_dir), "start"], timeout=timeout)
            if proc.returncode == 0:
                break
            last_error = (proc.stdout + proc.stderr).decode("utf-8", "replace") + self.log_text()
            self._kill_leftovers()
            if "Address already in use" not in last_error:
                raise PostfixError(f"postfix start failed in {self.directory}:\n{last_error}")
        else:
            raise PostfixError(f"postfix start failed in {self.directory}:\n{last_error}")
        self._started = True
        self._master_pid = self._read_master_pid()
        _running.add(self)
        try:
            if banner_probe:
                wait_for_banner(self.smtp_address, timeout)
            else:
                _wait_listening(self.smtp_address, timeout)
        except TimeoutError as e:
            self.stop()
            raise PostfixError(f"{e}\n--- maillog ---\n{self.log_text()}") from e
        return self

    def _read_master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the instance and make sure none of its processes is left. Idempotent.

        This does what ``postfix -c DIR stop`` does (SIGTERM to the master,
        which passes it on to its process group) but then polls for the
        processes to go instead of sleeping in whole seconds; ``postfix stop``
        itself is the fallback when the master's pid file cannot be read.
        Whatever is still alive at the deadline is killed (SIGKILL).
        """
        if not self._started:
            return
        self._started = False
        _running.discard(self)
        pid = self._master_pid or self._read_master_pid()
        if pid is None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self._run([POSTFIX, "-c", str(self.config_dir), "stop"], timeout=timeout)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        self._kill_leftovers(timeout)

    def _kill_leftovers(self, timeout: float = 5.0) -> None:
        pgid = self._master_pid or self._read_master_pid()
        if pgid is None:
            return
        deadline = time.monotonic() + timeout
        while _process_group_members(pgid):
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                kill_deadline = time.monotonic() + 5
                while _process_group_members(pgid) and time.monotonic() < kill_deadline:
                    time.sleep(0.02)
                break
            time.sleep(0.02)

    def cleanup(self) -> None:
        """Stop and remove the instance directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------- submission

    def submit_smtp(
        self,
        message: bytes,
        mail_from: str,
        rcpts: Iterable[str],
        source_ip: str = "127.0.0.1",
        *,
        helo: str = "client.example.com",
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        smtputf8: bool | None = None,
        timeout: float = 60.0,
    ) -> SmtpReply:
        """Submit over SMTP from *source_ip* (any 127/8 address); return the reply to DATA.

        The message bytes are sent as given (only dot-stuffed, and a final
        CRLF added if missing).  ``BODY=8BITMIME`` is added for 8-bit
        content and ``SMTPUTF8`` for non-ASCII addresses (or when *smtputf8*).
        Raises :class:`SmtpSubmitError` with the stage (``connect``, ``MAIL``,
        ``RCPT``, ``DATA``) and reply code when Postfix refuses.
        """
        recipients = list(rcpts)
        options = list(mail_options)
        if smtputf8 is None:
            smtputf8 = not all(a.isascii() for a in [mail_from, *recipients])
        if smtputf8 and "SMTPUTF8" not in (o.upper() for o in options):
            options.append("SMTPUTF8")
        if any(b > 0x7F for b in message) and not any(
            o.upper().startswith("BODY=") for o in options
        ):
            options.append("BODY=8BITMIME")
        stage = "connect"
        try:
            with smtplib.SMTP(
                timeout=timeout, source_address=(source_ip, 0), local_hostname=helo
            ) as client:
                code, reply = client.connect(*self.smtp_address)
                if code != 220:
                    raise SmtpSubmitError(stage, code, reply.decode("utf-8", "replace"))
                stage = "EHLO"
                client.ehlo()
                stage = "MAIL"
                code, reply = client.mail(mail_from, options)
                if code != 250:
                    raise SmtpSubmitError(stage, code, reply.decode("utf-8", "replace"))
                stage = "RCPT"
                for rcpt in recipients:
                    code, reply = client.rcpt(rcpt, list(rcpt_options))
                    if code not in (250, 251):
                        raise SmtpSubmitError(stage, code, reply.decode("utf-8", "replace"))
                stage = "DATA"
                code, reply = client.data(message)
                text = reply.decode("utf-8", "replace")
                if code != 250:
                    raise SmtpSubmitError(stage, code, text)
                stage = "QUIT"
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    client.quit()
                return SmtpReply(code, text)
        except smtplib.SMTPResponseException as e:
            error = e.smtp_error
            text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
            raise SmtpSubmitError(stage, e.smtp_code, text) from e
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            raise SmtpSubmitError(stage, 0, f"connection failed: {e}") from e

    def submit_sendmail(
        self,
        message: bytes,
        mail_from: str,
        rcpts: Iterable[str],
        *,
        extra_args: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> None:
        """Submit through Postfix's ``sendmail -C DIR`` (postdrop -> pickup -> cleanup).

        This is local submission: the message passes the non_smtpd_milters.
        Raises :class:`SendmailError` when sendmail exits non-zero.
        """
        _require(SENDMAIL)
        argv = [
            SENDMAIL,
            "-C",
            str(self.config_dir),
            "-i",
            "-f",
            mail_from,
            *extra_args,
            "--",
            *rcpts,
        ]
        proc = self._run(argv, input_bytes=message, timeout=timeout)
        if proc.returncode != 0:
            raise SendmailError(proc.returncode, proc.stderr.decode("utf-8", "replace"))

    # ------------------------------------------------------------------ queue

    def queue(self) -> list[QueueEntry]:
        """The queue, from ``postqueue -c DIR -j``."""
        proc = self._run([_require(POSTQUEUE), "-c", str(self.config_dir), "-j"])
        if proc.returncode != 0:
            raise PostfixError(f"postqueue -j failed: {proc.stderr.decode('utf-8', 'replace')}")
        entries: list[QueueEntry] = []
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            raw = json.loads(line)
            entries.append(
                QueueEntry(
                    queue_name=str(raw["queue_name"]),
                    queue_id=str(raw["queue_id"]),
                    sender=str(raw["sender"]),
                    recipients=tuple(
                        QueueRecipient(str(r["address"]), r.get("delay_reason"))
                        for r in raw.get("recipients", [])
                    ),
                    arrival_time=int(raw.get("arrival_time", 0)),
                    message_size=int(raw.get("message_size", 0)),
                    forced_expire=bool(raw.get("forced_expire", False)),
                )
            )
        return entries

    def flush(self) -> None:
        """``postqueue -c DIR -f``: retry deferred mail now."""
        proc = self._run([_require(POSTQUEUE), "-c", str(self.config_dir), "-f"])
        if proc.returncode != 0:
            raise PostfixError(f"postqueue -f failed: {proc.stderr.decode('utf-8', 'replace')}")

    def delete_queue(self) -> None:
        """``postsuper -c DIR -d ALL``: drop every queued message."""
        proc = self._run([_require(POSTSUPER), "-c", str(self.config_dir), "-d", "ALL"])
        if proc.returncode != 0:
            raise PostfixError(f"postsuper -d failed: {proc.stderr.decode('utf-8', 'replace')}")

    def wait_queue_empty(self, timeout: float = 20.0) -> None:
        """Poll ``postqueue -j`` until the queue is empty; TimeoutError with its content."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.queue()
            if not entries:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"queue not empty after {timeout}s: {entries}")
            time.sleep(0.05)

    # -------------------------------------------------------------------- log

    def log_text(self) -> str:
        """Everything Postfix logged so far (the maillog_file)."""
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 20.0) -> re.Match[str]:
        """Poll the log until *pattern* (a regex) matches; return the match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.log_text())
            if m is not None:
                return m
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{regex.pattern!r} not in the Postfix log after {timeout}s:\n{self.log_text()}"
                )
            time.sleep(0.05)

    def postconf(self, name: str) -> str:
        """The effective value of one parameter (``postconf -c DIR -h NAME``)."""
        proc = self._run([_require(POSTCONF), "-c", str(self.config_dir), "-h", name])
        if proc.returncode != 0:
            raise PostfixError(f"postconf {name}: {proc.stderr.decode('utf-8', 'replace')}")
        return proc.stdout.decode("utf-8", "replace").strip()
