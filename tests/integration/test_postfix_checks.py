"""The postfix.* rows of `reputable check` on real `postconf -c DIR` output, and their fixes run.

Each problem is written into main.cf or master.cf; the row must name it, and
its fix (the postconf commands, run here) must turn the row ok. Milter
sockets are real: one that listens, one that is a dead file, one missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from reputable.checks.findings import Finding, Status
from reputable.config import Config, MilterConfig, MilterSocket, SigningConfig
from reputable.postfix.checkup import postfix_findings
from reputable.postfix.commands import Commands
from reputable.postfix.postconf import Postfix
from reputable.signing.canonicalization import Canonicalization
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix_dir import DEBIAN_MASTER, PostfixDir
from tests.integration.harness.sink import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
OURS = "unix:reputable/milter.sock"
GOOD = f"smtpd_milters = {OURS}\nnon_smtpd_milters = $smtpd_milters\n"
SOCKET_ROW = f"postfix.milter.{OURS}"
AMAVIS = "content_filter = smtp-amavis:[127.0.0.1]:10024\n"
REINJECT = """\
127.0.0.1:10025 inet n  -       n       -       -       smtpd
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks
"""


def config_for(postfix: PostfixDir) -> Config:
    path = str(postfix.queue / "reputable" / "milter.sock")
    return Config(milter=MilterConfig(socket=MilterSocket("unix", path=path)))


def rows(postfix: PostfixDir, config: Config | None = None) -> dict[str, Finding]:
    postfix.settle()
    found = postfix_findings(config or config_for(postfix), Postfix(Commands(str(postfix.config))))
    return {f.id: f for f in found}


@contextmanager
def listening(path: Path) -> Iterator[None]:
    """A unix socket that accepts connections (the kernel queues them: no thread needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(8)
        try:
            yield
        finally:
            path.unlink()


def dead_socket(path: Path) -> None:
    """A socket file nobody listens on: what a milter that crashed leaves behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))


@pytest.fixture
def good(tmp_path: Path) -> Iterator[PostfixDir]:
    postfix = PostfixDir.make(tmp_path / "postfix", GOOD)
    with listening(postfix.queue / "reputable" / "milter.sock"):
        yield postfix


def assert_fixed(postfix: PostfixDir, row: str, status: Status, says: str) -> None:
    """The row has the problem; its fix, run, makes it ok."""
    found = rows(postfix)[row]
    assert found.status is status, found
    assert says in found.summary, found.summary
    postfix.run_fix(found.fix)
    mended = rows(postfix)[row]
    assert mended.status is Status.OK, mended


def test_a_correct_postfix_gives_ok_rows_only(good: PostfixDir) -> None:
    found = rows(good)
    assert {i: f.status for i, f in found.items()} == {
        "postfix.smtpd_milters": Status.OK,
        "postfix.non_smtpd_milters": Status.OK,
        SOCKET_ROW: Status.OK,
        "postfix.milter_default_action": Status.OK,
        "postfix.milter_protocol": Status.OK,
        "postfix.no_milters": Status.OK,
        "postfix.content_filter": Status.OK,
    }
    # Not set in main.cf: Postfix's own default, as postconf -d says it.
    assert found["postfix.milter_default_action"].summary.startswith(
        "milter_default_action = tempfail (Postfix's default) for smtp/inet, pickup/unix"
    )
    assert found[SOCKET_ROW].summary == (
        f"{OURS} answers at {good.queue}/reputable/milter.sock "
        "(for smtp/inet, pickup/unix (sendmail))"
    )


def test_smtpd_milters_without_reputable(good: PostfixDir) -> None:
    good.main_cf.write_text(
        good.main_cf.read_text().replace(f"smtpd_milters = {OURS}\n", "smtpd_milters =\n", 1)
    )
    good.main_cf.write_text(good.main_cf.read_text() + f"non_smtpd_milters = {OURS}\n")
    assert_fixed(
        good, "postfix.smtpd_milters", Status.FAIL, "mail submitted over SMTP is not signed"
    )


def test_non_smtpd_milters_missing(good: PostfixDir) -> None:
    good.main_cf.write_text(
        good.main_cf.read_text().replace("non_smtpd_milters = $smtpd_milters\n", "")
    )
    assert_fixed(
        good, "postfix.non_smtpd_milters", Status.FAIL, "mail from sendmail and cron is not signed"
    )


def test_milter_default_action_accept(good: PostfixDir) -> None:
    good.main_cf.write_text(good.main_cf.read_text() + "milter_default_action = accept\n")
    assert_fixed(good, "postfix.milter_default_action", Status.FAIL, "mail leaves unsigned")
    assert good.written()["milter_default_action"] == "tempfail"


def test_an_old_milter_protocol_and_simple_canonicalization(good: PostfixDir) -> None:
    good.main_cf.write_text(good.main_cf.read_text() + "milter_protocol = 4\n")
    simple = replace(
        config_for(good), signing=SigningConfig(header_canonicalization=Canonicalization.SIMPLE)
    )
    assert rows(good, simple)["postfix.milter_protocol"].status is Status.FAIL
    assert_fixed(good, "postfix.milter_protocol", Status.WARN, "reputable speaks 6")


def test_no_milters_in_main_cf(good: PostfixDir) -> None:
    good.main_cf.write_text(
        good.main_cf.read_text() + "receive_override_options = no_milters, no_address_mappings\n"
    )
    assert_fixed(good, "postfix.no_milters", Status.FAIL, "smtp/inet, pickup/unix (sendmail)")
    assert good.written()["receive_override_options"] == "no_address_mappings"


@pytest.mark.parametrize(
    "service",
    [
        "pickup    unix  n       -       y       60      1       pickup\n",
        "submission inet n       -       y       -       -       smtpd\n",
    ],
)
def test_no_milters_on_a_way_in(tmp_path: Path, service: str) -> None:
    master = DEBIAN_MASTER.replace(
        "pickup    unix  n       -       y       60      1       pickup\n", ""
    )
    master += service + "  -o receive_override_options=no_milters\n"
    postfix = PostfixDir.make(tmp_path / "postfix", GOOD, master)
    name = "/".join(service.split()[:2])
    assert_fixed(postfix, "postfix.no_milters", Status.FAIL, f"mail entering through {name}")


def test_content_filter_whose_way_back_runs_the_milters_again(tmp_path: Path) -> None:
    postfix = PostfixDir.make(tmp_path / "postfix", GOOD + AMAVIS, DEBIAN_MASTER + REINJECT)
    found = rows(postfix)
    # Without no_milters the way back is no failure of no_milters: the filter row says it.
    assert found["postfix.no_milters"].status is Status.OK
    assert_fixed(
        postfix,
        "postfix.content_filter",
        Status.WARN,
        "re-injects through 127.0.0.1:10025/inet, which runs the milters again",
    )
    mended = rows(postfix)
    assert "but the content filter's way back (127.0.0.1:10025/inet)" in (
        mended["postfix.no_milters"].summary
    )
    assert mended["postfix.smtpd_milters"].status is Status.OK


def test_content_filter_without_a_way_back(tmp_path: Path) -> None:
    postfix = PostfixDir.make(tmp_path / "postfix", GOOD + AMAVIS)
    found = rows(postfix)["postfix.content_filter"]
    assert found.status is Status.WARN
    assert "no way back was found" in found.summary
    # The fix's commands are Postfix's: they make amavis's way back, milters off.
    commands = found.fix.partition("as amavis does: ")[2]
    postfix.run_fix(commands)
    assert rows(postfix)["postfix.content_filter"].status is Status.OK


def test_a_dead_and_a_missing_socket(good: PostfixDir, tmp_path: Path) -> None:
    other = PostfixDir.make(tmp_path / "other", GOOD)
    dead_socket(other.queue / "reputable" / "milter.sock")
    found = rows(other)[SOCKET_ROW]
    assert found.status is Status.FAIL
    assert found.summary == (
        f"nothing listens on {other.queue}/reputable/milter.sock (connection refused): for "
        "mail through smtp/inet, pickup/unix (sendmail), Postfix defers it (4xx) until the "
        "milter answers"
    )
    assert found.fix.startswith("start reputable: systemctl start reputable")
    (other.queue / "reputable" / "milter.sock").unlink()
    assert "(no such socket)" in rows(other)[SOCKET_ROW].summary
    assert rows(good)[SOCKET_ROW].status is Status.OK


def test_an_absolute_path_seen_from_a_chrooted_smtpd(good: PostfixDir) -> None:
    absolute = f"unix:{good.queue}/reputable/milter.sock"
    good.main_cf.write_text(
        good.main_cf.read_text().replace(f"smtpd_milters = {OURS}", f"smtpd_milters = {absolute}")
    )
    row = f"postfix.milter.{absolute}"
    found = rows(good)[row]
    assert found.status is Status.FAIL
    assert (
        f"(the daemon is chrooted in {good.queue}, so {absolute} is {good.queue}{good.queue}"
        in (found.summary)
    )
    good.run_fix(found.fix.removeprefix("name it relative to the queue directory: "))
    assert good.written()["smtpd_milters"] == OURS
    assert rows(good)[SOCKET_ROW].status is Status.OK


def test_another_milter_that_is_down_is_taken_out_by_its_fix(good: PostfixDir) -> None:
    good.main_cf.write_text(
        good.main_cf.read_text().replace(
            f"smtpd_milters = {OURS}", f"smtpd_milters = unix:opendmarc/opendmarc.sock, {OURS}"
        )
    )
    row = "postfix.milter.unix:opendmarc/opendmarc.sock"
    found = rows(good)[row]
    assert found.status is Status.FAIL
    good.run_fix(
        found.fix.removeprefix("start the milter that should listen there, or take it out: ")
    )
    after = rows(good)
    assert row not in after
    assert good.written()["non_smtpd_milters"] == "$smtpd_milters"  # kept as written
    assert after[SOCKET_ROW].status is Status.OK


def test_a_socket_root_may_not_see_is_not_called_dead() -> None:
    base = Path(tempfile.mkdtemp(prefix="reputable-postfix-check-"))
    try:
        base.chmod(0o755)  # nobody reaches the config; only the socket's directory is closed
        postfix = PostfixDir.make(base, GOOD)
        with listening(postfix.queue / "reputable" / "milter.sock"):
            (postfix.queue / "reputable").chmod(0o700)
            script = (
                "import json, sys\n"
                "from reputable.postfix.checkup import postfix_findings\n"
                "from reputable.postfix.commands import Commands\n"
                "from reputable.postfix.postconf import Postfix\n"
                "from reputable.config import Config, MilterConfig, MilterSocket\n"
                "socket = MilterSocket('unix', path=sys.argv[2])\n"
                "found = postfix_findings(Config(milter=MilterConfig(socket=socket)), "
                "Postfix(Commands(sys.argv[1])))\n"
                "print(json.dumps({f.id: [f.status, f.summary] for f in found}))\n"
            )
            # nobody may not read the checkout (a private clone) nor run the venv's python:
            # a readable copy of the package runs on Debian's own python3.
            source = base / "source"
            shutil.copytree(ROOT / "reputable", source / "reputable")
            subprocess.run(["chmod", "-R", "a+rX", str(source)], check=True)
            done = subprocess.run(
                [
                    *("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"),
                    *("/usr/bin/python3", "-c", script, str(postfix.config)),
                    str(postfix.queue / "reputable" / "milter.sock"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                cwd=source,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(source)},
            )
        status, summary = json.loads(done.stdout)[SOCKET_ROW]
        assert status == "unknown"  # could not be checked: no fault, no exit code
        assert summary == (
            f"could not check {OURS} at {postfix.queue}/reputable/milter.sock "
            "(permission denied): run as root"
        )
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


def test_postfix_without_main_cf_and_with_a_broken_master_cf(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (found,) = postfix_findings(Config(), Postfix(Commands(str(empty))))
    assert found == Finding(
        "postfix.postconf",
        Status.OK,
        "Postfix is installed but not set up (no main.cf): nothing to check",
    )
    broken = PostfixDir.make(tmp_path / "broken", GOOD)
    (broken.config / "master.cf").unlink()
    (found,) = postfix_findings(Config(), Postfix(Commands(str(broken.config))))
    assert found.status is Status.WARN
    assert found.summary == (
        f"could not read Postfix's settings (postconf -c {broken.config} -M failed: open "
        f"{broken.config}/master.cf: No such file or directory): the Postfix rows could not run"
    )


def test_reputable_check_reads_the_postfix_in_mail_config(
    good: PostfixDir, tmp_path: Path, dns_server: DnsServer, smtp_sink: SmtpSink
) -> None:
    """The whole command: Postfix's own MAIL_CONFIG picks the instance, the rows come last."""
    good.main_cf.write_text(good.main_cf.read_text() + "milter_default_action = accept\n")
    good.settle()
    config = tmp_path / "reputable.toml"
    config.write_text(
        f'[milter]\nsocket = "unix:{good.queue}/reputable/milter.sock"\n'
        f'[signing]\ndomains = ["check.example.com"]\nkeys = "{tmp_path}/keys"\n'
        '[host]\nsending_ips = ["203.0.113.11"]\nhelo_name = "mail.check.example.com"\n'
        '[checks]\ndnsbl = []\nport25_target = "{}:{}"\nport25_timeout = "2s"\n'.format(
            *smtp_sink.address
        )
        + '[dns]\nnameservers = ["{}:{}"]\ntimeout = "1s"\n'.format(*dns_server.address)
    )
    done = subprocess.run(
        [sys.executable, "-m", "reputable", "check", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={**os.environ, "MAIL_CONFIG": str(good.config)},
    )
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    assert done.returncode == 2  # a failure among the rows: this one at least
    checks = report["checks"]
    postfix = [c for c in checks if c["id"].startswith("postfix.")]
    assert checks[-len(postfix) :] == postfix  # the family comes last
    action = next(c for c in postfix if c["id"] == "postfix.milter_default_action")
    assert action["status"] == "fail"
    assert action["fix"] == "postconf -e 'milter_default_action = tempfail' && postfix reload"
    assert next(c for c in postfix if c["id"] == SOCKET_ROW)["status"] == "ok"
