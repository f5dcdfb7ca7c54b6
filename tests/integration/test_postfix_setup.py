"""`reputable setup postfix` against real Postfix: what it prints is what --apply does, once.

Most tests use a configuration directory that `postconf -c DIR` reads, with no
Postfix running; the last one attaches reputable to a running, chrooted
Postfix instance and sends mail through both ways in.
"""

from __future__ import annotations

import grp
import io
import os
import pwd
import re
import stat
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from reputable.checks.findings import Status
from reputable.config import Config, SigningConfig, load_config
from reputable.keys.commands import new_command
from reputable.postfix.checkup import postfix_findings
from reputable.postfix.commands import Commands
from reputable.postfix.postconf import Postfix, PostfixMissing
from reputable.postfix.setup_command import write_backup
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix import PostfixInstance
from tests.integration.harness.postfix_dir import PostfixDir
from tests.integration.harness.sink import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
DMARC = "unix:opendmarc/opendmarc.sock"
DKIM = "unix:opendkim/opendkim.sock"


def setup_postfix(config: Path, postfix: Path, *more: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "reputable", "setup", "postfix", "--config", str(config)]
    argv += ["--postfix-config", str(postfix), *more]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def commands_in(output: str) -> list[str]:
    """The shell commands of the output (a postconf -e over its continuation lines)."""
    script = re.sub(r" \\\n\s+", " ", output)
    return [line for line in script.splitlines() if line.startswith("postconf ")]


def write_config(path: Path, socket: str, owner: str = "", group: str = "") -> Path:
    path.write_text(
        f'[milter]\nsocket = "{socket}"\nsocket_owner = "{owner}"\nsocket_group = "{group}"\n'
    )
    return path


@pytest.fixture
def debian(tmp_path: Path) -> PostfixDir:
    """A Debian-like Postfix with OpenDMARC, and `non_smtpd_milters = $smtpd_milters`."""
    main = f"smtpd_milters = {DMARC}\nnon_smtpd_milters = $smtpd_milters\n"
    return PostfixDir.make(tmp_path / "postfix", main)


def test_print_apply_and_apply_again(debian: PostfixDir, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "r.toml", f"unix:{debian.queue}/reputable/milter.sock", "nobody", "postfix"
    )
    before = debian.main_cf.read_bytes()

    printed = setup_postfix(config, debian.config)
    assert printed.returncode == 0, printed.stderr
    assert debian.main_cf.read_bytes() == before  # printing changes nothing
    assert not (debian.queue / "reputable").exists()
    assert printed.stdout.splitlines()[1:5] == [
        f"postconf -c {debian.config} -e \\",
        f"    'smtpd_milters = {DMARC}, unix:reputable/milter.sock' \\",
        "    'milter_default_action = tempfail' \\",
        "    'milter_protocol = 6'",
    ]
    assert (
        f"# the socket's directory {debian.queue}/reputable is missing: --apply as root makes "
        f"it (install -d -o nobody -g postfix -m 2750 {debian.queue}/reputable)"
    ) in printed.stdout.splitlines()
    assert printed.stdout.splitlines()[-1] == (
        f"# reputable does not answer on unix:{debian.queue}/reputable/milter.sock yet (No such "
        "file or directory): until it does, Postfix defers mail (kept, and retried): "
        "systemctl start reputable"
    )

    applied = setup_postfix(config, debian.config, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert commands_in(applied.stdout) == commands_in(printed.stdout)
    written = debian.written()
    assert written["smtpd_milters"] == f"{DMARC}, unix:reputable/milter.sock"
    assert written["non_smtpd_milters"] == "$smtpd_milters"
    assert (written["milter_default_action"], written["milter_protocol"]) == ("tempfail", "6")
    (backup,) = debian.config.glob("main.cf.reputable-*")
    assert re.fullmatch(r"main\.cf\.reputable-\d{14}", backup.name)
    assert backup.read_bytes() == before
    assert f"# main.cf backed up to {backup}" in applied.stdout
    assert "+milter_default_action = tempfail\n" in applied.stdout  # the diff
    assert f"--- {backup}\n+++ {debian.main_cf}\n" in applied.stdout
    assert "# Postfix is not running: the settings take effect when it starts" in applied.stdout
    made = (debian.queue / "reputable").stat()
    assert (made.st_uid, made.st_gid) == (
        pwd.getpwnam("nobody").pw_uid,
        grp.getgrnam("postfix").gr_gid,
    )
    assert stat.S_IMODE(made.st_mode) == 0o2750

    debian.settle()
    after = debian.main_cf.read_bytes()
    again = setup_postfix(config, debian.config, "--apply")
    assert again.returncode == 0, again.stderr
    assert "# main.cf already has reputable's settings: nothing changed" in again.stdout
    assert commands_in(again.stdout) == []
    assert "reload" not in again.stdout
    assert debian.main_cf.read_bytes() == after
    assert list(debian.config.glob("main.cf.reputable-*")) == [backup]
    shown = setup_postfix(config, debian.config)
    assert commands_in(shown.stdout) == []
    assert "# main.cf already has reputable's settings: nothing to change" in shown.stdout


def test_the_printed_commands_set_what_apply_sets(debian: PostfixDir, tmp_path: Path) -> None:
    config = write_config(tmp_path / "r.toml", "inet:8891@127.0.0.1")
    original = debian.main_cf.read_bytes()
    printed = setup_postfix(config, debian.config).stdout
    assert setup_postfix(config, debian.config, "--apply").returncode == 0
    by_apply = debian.written()

    debian.main_cf.write_bytes(original)
    subprocess.run(["sh", "-c", printed], check=True, timeout=60, cwd=tmp_path)
    assert debian.written() == by_apply
    assert by_apply["smtpd_milters"] == f"{DMARC}, inet:127.0.0.1:8891"


def test_other_dkim_signers_are_named_with_their_removal_but_kept(tmp_path: Path) -> None:
    main = f"smtpd_milters = {DKIM}, {DMARC}\nnon_smtpd_milters = {DKIM}\n"
    postfix = PostfixDir.make(tmp_path / "postfix", main)
    config = write_config(tmp_path / "r.toml", f"unix:{postfix.queue}/reputable/milter.sock")
    done = setup_postfix(config, postfix.config, "--apply")
    assert done.returncode == 0, done.stderr
    written = postfix.written()
    assert written["smtpd_milters"] == f"{DKIM}, {DMARC}, unix:reputable/milter.sock"
    assert written["non_smtpd_milters"] == f"{DKIM}, unix:reputable/milter.sock"
    notes = [line for line in done.stdout.splitlines() if line.startswith("#   postconf")]
    assert notes == [
        f"#   postconf -c {postfix.config} -e "
        f"'smtpd_milters = {DMARC}, unix:reputable/milter.sock'",
        f"#   postconf -c {postfix.config} -e 'non_smtpd_milters = unix:reputable/milter.sock'",
    ]
    assert f"# {DKIM} (OpenDKIM) is also in smtpd_milters: until it goes" in done.stdout


def test_a_backup_never_replaces_another(tmp_path: Path) -> None:
    main_cf = tmp_path / "main.cf"
    main_cf.write_text("a = 1\n")
    main_cf.chmod(0o640)
    now = datetime(2026, 11, 27, 5, 4, 3)
    first = write_backup(main_cf, b"first\n", now)
    second = write_backup(main_cf, b"second\n", now)
    assert (first.name, second.name) == (
        "main.cf.reputable-20261127050403",
        "main.cf.reputable-20261127050403-2",
    )
    assert (first.read_bytes(), second.read_bytes()) == (b"first\n", b"second\n")
    assert stat.S_IMODE(first.stat().st_mode) == 0o640


def test_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path / "r.toml", "inet:8891@127.0.0.1")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = setup_postfix(config, empty, "--apply")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"reputable: postconf -c {empty} -nx failed: open {empty}/main.cf: No such file or "
        f"directory: is {empty} a Postfix configuration directory?\n"
    )
    no_master = PostfixDir.make(tmp_path / "no-master")
    (no_master.config / "master.cf").unlink()
    done = setup_postfix(config, no_master.config)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"reputable: postconf -c {no_master.config} -M failed: "
        f"open {no_master.config}/master.cf: No such file or directory\n"
    )


def test_a_missing_postfix_command_is_said_so() -> None:
    with pytest.raises(PostfixMissing, match=r"^postconf-9 not found: is Postfix installed\?"):
        Postfix().run(["postconf-9", "-n"])


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    config = Config(signing=SigningConfig(domains=("example.com",), keys=keys))
    assert new_command(config, "example.com", "s1", "rsa", 2048, False, out=io.StringIO()) == 0
    return keys


def test_a_running_chrooted_postfix_signs_both_ways_in_after_setup(
    tmp_path: Path, keys: Path, dns_server: DnsServer, smtp_sink: SmtpSink
) -> None:
    postfix = PostfixInstance(smtp_sink.address, milter=None, chroot_smtpd=True)
    postfix.queue_dir.mkdir()
    socket_path = postfix.queue_dir / "reputable" / "milter.sock"
    milter = MilterDaemon(
        tmp_path,
        keys,
        ["example.com"],
        dns_server.address,
        listen=f"unix:{socket_path}",
        socket_group="postfix",
        socket_mode="0660",
    )
    try:
        postfix.start(banner_probe=False)
        milter.start()
        done = setup_postfix(milter.config_path, postfix.config_dir, "--apply")
        assert done.returncode == 0, done.stderr
        assert "# Postfix reloaded: the settings are in effect" in done.stdout
        assert "does not answer" not in done.stdout
        postfix.wait_for_log(r"reload -- version")
        assert postfix.postconf("smtpd_milters") == "unix:reputable/milter.sock"

        for submit in ("smtp", "sendmail"):
            message_id = f"{uuid.uuid4()}@example.com"
            data = (
                f"From: alice@example.com\r\nTo: bob@example.test\r\nSubject: {submit}\r\n"
                f"Message-ID: <{message_id}>\r\n\r\nHello.\r\n"
            ).encode()
            if submit == "smtp":
                postfix.submit_smtp(data, "alice@example.com", ["bob@example.test"])
            else:
                postfix.submit_sendmail(data, "alice@example.com", ["bob@example.test"])
            received = smtp_sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60)
            assert received.header("DKIM-Signature") is not None, submit

        postfix_config = str(postfix.config_dir)
        os.utime(postfix.config_dir / "main.cf", (0, 0))  # read it now, not in 2 s
        rows = postfix_findings(
            load_config(str(milter.config_path)), Postfix(Commands(postfix_config))
        )
        assert {f.id: f.status for f in rows} == {
            "postfix.smtpd_milters": Status.OK,
            "postfix.non_smtpd_milters": Status.OK,
            "postfix.milter.unix:reputable/milter.sock": Status.OK,
            "postfix.milter_default_action": Status.OK,
            "postfix.milter_protocol": Status.OK,
            "postfix.no_milters": Status.OK,
            "postfix.content_filter": Status.OK,
        }
        # The probes' connections closed at once did not disturb the milter.
        assert milter.process is not None and milter.process.poll() is None
    finally:
        postfix.stop()
        stopped = milter.stop()
        postfix.cleanup()
    assert stopped == 0
