"""The Debian package, installed on a fresh Debian 12 as the README's "Install" section says.

`make deb` builds the package here. A fresh Debian 12 (mmdebstrap, with
systemd and Postfix as a mail server has them) is booted under
systemd-nspawn, and the README's Install commands run in it one by one:
`apt install` pulls every dependency from Debian alone, the maintainer
scripts make the service user and paths, `setup postfix --apply` attaches
Postfix, and `systemctl enable --now` starts the hardened unit under a real
systemd. Mail then goes through Debian's own chrooted smtpd, and the
relayed copy is checked by the three verifiers.

The world around the machine is the tests': its resolver is switched to the
test DNS server once the packages are installed (the scenario: this host
has its PTR, SPF and DKIM records published), and its Postfix relays to the
test sink.
"""

from __future__ import annotations

import json
import re
import shlex
import smtplib
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reputable.host import route_sources
from reputable.keys.record import record_name, record_value, split_strings
from reputable.keys.store import read_store
from tests.integration.daemon import free_port
from tests.integration.harness.container import DebianContainer
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.scratch import ScratchRecords
from tests.integration.harness.sink import ReceivedMessage, SmtpSink
from tests.integration.harness.verifiers import verify_all

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOMAIN = "example.com"
HOSTNAME = "mail.example.com"
SOCKET = "/var/spool/postfix/reputable/milter.sock"
# What a Debian 12 mail server has before reputable arrives.
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "postfix", "man-db")
MAX_EXPOSURE = 2.0


def readme_install_commands() -> list[str]:
    """The commands of the README's Install section, in order (comments and blanks dropped)."""
    text = README.read_text()
    section = text[text.index("\n## Install\n") :]
    section = section[: section.index("\n## ", 1)]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the Install section has no ```sh block"
    lines = [line.split("#", 1)[0].strip() for line in block[1].splitlines()]
    return [line for line in lines if line]


@dataclass
class Machine:
    container: DebianContainer
    dns: DnsServer
    sink: SmtpSink
    smtp_port: int
    deb: Path
    outputs: dict[str, subprocess.CompletedProcess[str]]
    install_s: float

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.container.run(command, check=check)

    def journal(self, *options: str) -> list[str]:
        done = self.run("journalctl --no-pager -o cat -u reputable " + " ".join(options))
        return done.stdout.splitlines()

    def received(self, message_id: str) -> ReceivedMessage:
        """The relayed copy; on a timeout, what the machine's logs and queue say."""
        try:
            return self.sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60)
        except TimeoutError as exc:
            logs = self.run("journalctl --no-pager -n 60; postqueue -p", check=False).stdout
            raise AssertionError(f"{exc}\n{logs}") from None

    def service(self, *properties: str) -> dict[str, str]:
        done = self.run("systemctl show reputable -p " + ",".join(properties))
        return dict(line.split("=", 1) for line in done.stdout.splitlines())


def prepare_postfix(container: DebianContainer, smtp_port: int, sink: SmtpSink) -> None:
    """The admin's Postfix before reputable: on loopback here, relaying to the test sink.

    smtpd keeps Debian's own master.cf line (chrooted), moved to a free port.
    """
    settings = {
        "myhostname": HOSTNAME,
        "mydestination": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "relayhost": f"[{sink.address[0]}]:{sink.address[1]}",
        "smtp_host_lookup": "native",
        "smtpd_peername_lookup": "no",
    }
    for name, value in settings.items():
        container.run(f"postconf -e {shlex.quote(f'{name}={value}')}")
    line = container.run("postconf -M smtp/inet").stdout.split()
    assert line[4] == "y", f"Debian's smtpd is not chrooted: {line}"
    line[0] = f"127.0.0.1:{smtp_port}"
    container.run("postconf -MX smtp/inet")
    container.run(f"postconf -Me {shlex.quote(line[0] + '/inet=' + ' '.join(line))}")
    container.run("systemctl restart postfix")


def publish_host(records: ScratchRecords) -> None:
    """This host's records, as its admin has them: the zone, PTR and A/AAAA, SPF, DMARC.

    The zone's only name server is the test server's port-53 address, so that
    the key checks, which ask a domain's own name servers, reach it too.
    """
    server = records.server
    assert server.port53_address is not None
    records.own(DOMAIN)
    server.set_records(DOMAIN, "SOA", [f"ns1.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 300"])
    server.set_records(DOMAIN, "NS", [f"ns1.{DOMAIN}."])
    records.a(f"ns1.{DOMAIN}", server.port53_address[0])
    ips = [str(ip) for ip in route_sources()]
    assert ips, "no default route on this machine: cannot tell its sending IP"
    for ip in ips:
        records.ptr(ip, f"{HOSTNAME}.")
    if v4 := [ip for ip in ips if ":" not in ip]:
        records.a(HOSTNAME, *v4)
    if v6 := [ip for ip in ips if ":" in ip]:
        records.aaaa(HOSTNAME, *v6)
    mechanisms = " ".join(f"ip{6 if ':' in ip else 4}:{ip}" for ip in ips)
    records.txt(DOMAIN, f"v=spf1 {mechanisms} -all")
    records.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none")


def publish_dkim(records: ScratchRecords, keys: Path) -> None:
    for stored in read_store(keys).keys:
        key = stored.key
        name = records.own(record_name(key.selector, key.domain))
        records.server.set_txt(name, *split_strings(record_value(key.algorithm, key.private_key)))


@pytest.fixture(scope="module")
def machine(dns53: DnsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    commands = readme_install_commands()
    assert commands[0] == "make deb", commands
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    outputs["make deb"] = subprocess.run(
        ["make", "deb"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert outputs["make deb"].returncode == 0, outputs["make deb"].stderr
    (deb,) = ROOT.glob("reputable_*_all.deb")

    started = time.monotonic()
    container = DebianContainer(tmp_path_factory.mktemp("debian12"), BASE_PACKAGES)
    container.create()
    sink = SmtpSink().start()
    records = ScratchRecords(dns53)
    try:
        container.start()
        container.run("echo 'APT::Get::Assume-Yes \"true\";' > /etc/apt/apt.conf.d/90yes")
        smtp_port = free_port()
        prepare_postfix(container, smtp_port, sink)
        (container.root / "root" / deb.name).write_bytes(deb.read_bytes())
        publish_host(records)
        machine = Machine(container, dns53, sink, smtp_port, deb, outputs, 0.0)
        for command in commands[1:]:
            if (
                command.startswith("reputable")
                and "nameserver 127.53" not in container.run("cat /etc/resolv.conf").stdout
            ):
                # Packages are in: from here on the machine asks the test's DNS server.
                assert dns53.port53_address is not None
                ns = dns53.port53_address[0]
                container.run(f"echo 'nameserver {ns}' > /etc/resolv.conf")
            outputs[command] = done = container.run(command, check=False, timeout=600)
            # `reputable check` reports (exit 1 warn, 2 fail); everything else must succeed.
            allowed = (0, 1, 2) if command.startswith("reputable check") else (0,)
            assert done.returncode in allowed, f"{command}:\n{done.stdout}\n{done.stderr}"
            if command.startswith("reputable keys new"):
                publish_dkim(records, container.path("/var/lib/reputable/keys"))
        machine.install_s = time.monotonic() - started
        print(
            f"fresh Debian 12: root made in {container.create_s:.0f}s, "
            f"README's Install done in {machine.install_s:.0f}s"
        )
        yield machine
    finally:
        container.stop()
        sink.stop()
        records.undo()
        container.remove()


def test_make_deb_builds_a_package_lintian_accepts(machine: Machine) -> None:
    lintian = subprocess.run(
        ["lintian", "--tag-display-limit", "0", str(machine.deb)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in lintian.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], lintian.stdout
    assert re.fullmatch(r"reputable_\d+\.\d+\.\d+_all\.deb", machine.deb.name)


def test_the_package_holds_the_program_unit_and_man_pages_but_no_venv(machine: Machine) -> None:
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(machine.deb)], capture_output=True, text=True, check=True
    ).stdout
    paths = {line.split()[-1] for line in listing.splitlines()}
    for wanted in (
        "./usr/bin/reputable",
        "./lib/systemd/system/reputable.service",
        "./usr/share/man/man8/reputable.8.gz",
        "./usr/share/man/man5/reputable.toml.5.gz",
        "./etc/reputable/reputable.toml",
        "./usr/lib/python3/dist-packages/reputable/milter/server.py",
        "./usr/share/doc/reputable/examples/reputable.rules.yml",
    ):
        assert wanted in paths, wanted
    for path in paths:
        assert ".venv" not in path and "__pycache__" not in path and not path.endswith(".pyc")
        assert "site-packages" not in path, path


def test_the_dependencies_are_debians_own_libraries(machine: Machine) -> None:
    depends = subprocess.run(
        ["dpkg-deb", "-f", str(machine.deb), "Depends"], capture_output=True, text=True, check=True
    ).stdout
    names = {part.strip().split()[0] for part in depends.split(",")}
    for library in (
        "python3-milter",
        "python3-dnspython",
        "python3-cryptography",
        "python3-spf",
        "python3-uvloop",
        "python3-prometheus-client",
    ):
        assert library in names, depends
    # What apt installed for them is Debian 12's: the versions the minimums were lowered to.
    versions = machine.run(
        "dpkg-query -W -f='${Package} ${Version}\\n' python3-dnspython python3-cryptography "
        "python3-uvloop python3-milter"
    ).stdout
    assert "python3-dnspython 2.3.0" in versions, versions
    assert "python3-cryptography 38.0.4" in versions, versions


def test_the_maintainer_scripts_made_the_user_and_safe_paths(machine: Machine) -> None:
    account = machine.run("getent passwd reputable").stdout.strip().split(":")
    assert int(account[2]) < 1000, account  # a system user
    assert account[6] in ("/usr/sbin/nologin", "/bin/false"), account
    stats = machine.run(
        "stat -c '%n %U %G %a' /var/lib/reputable/keys /var/spool/postfix/reputable"
    ).stdout.splitlines()
    assert stats == [
        "/var/lib/reputable/keys reputable reputable 700",
        "/var/spool/postfix/reputable reputable postfix 2750",
    ]
    conffiles = machine.run("dpkg-query -W -f='${Conffiles}' reputable").stdout
    assert "/etc/reputable/reputable.toml" in conffiles
    # The package's scripts run again (dpkg-reconfigure) without harm.
    machine.run("dpkg-reconfigure reputable")
    assert machine.run("getent passwd reputable").stdout.strip().split(":") == account


def test_commands_run_on_the_installed_code(machine: Machine) -> None:
    assert machine.run("reputable --version").stdout.strip().startswith("reputable ")
    (key,) = machine.run(f"ls /var/lib/reputable/keys/{DOMAIN}/").stdout.split()[:1]
    pem = machine.run(f"stat -c '%U %a' /var/lib/reputable/keys/{DOMAIN}/s*.pem").stdout.split()
    assert pem == ["reputable", "600"], key
    # The names Exim's signer reads: a link to that key and its selector.
    link = machine.run(f"readlink /var/lib/reputable/keys/{DOMAIN}/active-rsa.pem").stdout
    assert link.strip().endswith(".pem") and link.strip().startswith("s"), link
    check = machine.run("reputable check --json", check=False)
    assert check.returncode in (0, 1, 2), check.stderr
    report = json.loads(check.stdout)
    ids = {row["id"] for row in report["checks"]}
    assert any(i.startswith("ptr") for i in ids), ids
    assert any(i.startswith("postfix") for i in ids), ids


def test_setup_postfix_applied_the_milter_settings(machine: Machine) -> None:
    settings = machine.run("postconf -n").stdout
    for line in (
        "smtpd_milters = unix:reputable/milter.sock",
        "non_smtpd_milters = unix:reputable/milter.sock",
        "milter_default_action = tempfail",
        "milter_protocol = 6",
    ):
        assert line in settings.splitlines(), settings
    assert machine.run("ls /etc/postfix/main.cf.reputable-*").stdout.strip()


def test_the_service_runs_hardened_under_systemd(machine: Machine) -> None:
    shown = machine.service("ActiveState", "Type", "User", "StatusText", "MainPID", "NRestarts")
    assert (shown["ActiveState"], shown["Type"], shown["User"]) == ("active", "notify", "reputable")
    assert f"listening on unix:{SOCKET}" in shown["StatusText"], shown
    assert shown["NRestarts"] == "0"
    status = machine.run(f"cat /proc/{shown['MainPID']}/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines())
    uid = machine.run("id -u reputable").stdout.strip()
    assert fields["Uid"].split()[1] == uid  # effective uid
    assert int(fields["CapEff"].strip(), 16) == 0
    assert int(fields["CapBnd"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # a system call filter is in force
    socket_stat = machine.run(f"stat -c '%U %G %a %F' {SOCKET}").stdout.strip().split(maxsplit=3)
    assert socket_stat == ["reputable", "postfix", "660", "socket"]


def exposure(output: str) -> float:
    found = re.search(r"Overall exposure level for reputable\.service: (\d+\.\d+)", output)
    assert found is not None, output
    return float(found[1])


def test_the_unit_verifies_and_its_exposure_is_low(machine: Machine) -> None:
    verify = machine.run("systemd-analyze verify reputable.service", check=False)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    running = machine.run("systemd-analyze security --no-pager reputable.service", check=False)
    offline = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            "--no-pager",
            str(ROOT / "packaging" / "reputable.service"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert exposure(running.stdout) <= MAX_EXPOSURE
    assert exposure(offline.stdout) <= MAX_EXPOSURE
    # The README states the figure systemd gives.
    readme = " ".join(README.read_text().split())
    figure = (
        f"`systemd-analyze security reputable` rates its exposure {exposure(running.stdout)} "
        f"on the running system, {exposure(offline.stdout)} with `--offline=true`"
    )
    assert figure in readme


def send(machine: Machine) -> tuple[str, ReceivedMessage]:
    message_id = f"{uuid.uuid4()}@{DOMAIN}"
    data = (
        f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@example.test\r\nSubject: installed\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n"
        "Sent through Debian's own Postfix.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", machine.smtp_port, timeout=60) as smtp:
        smtp.sendmail(f"alice@{DOMAIN}", ["bob@example.test"], data.encode())
    return message_id, machine.received(message_id)


def test_mail_through_the_chrooted_smtpd_is_signed_and_verifies(machine: Machine) -> None:
    _, received = send(machine)
    results = verify_all(received.data, machine.dns)
    assert results["mail-dkim"].only("rsa").passed, results["mail-dkim"]
    assert results["opendkim"].passed, results["opendkim"]
    assert results["dkimpy"].passed, results["dkimpy"]
    lines = [line for line in machine.journal() if "action=" in line]
    assert any(f"dkim={DOMAIN}/" in line and "source=internal" in line for line in lines), lines


def test_mail_from_sendmail_is_signed_too(machine: Machine) -> None:
    message_id = f"{uuid.uuid4()}@{DOMAIN}"
    message = (
        f"From: root@{DOMAIN}\nTo: bob@example.test\nSubject: cron\n"
        f"Message-ID: <{message_id}>\n\nFrom a local command.\n"
    )
    machine.container.run(
        f"/usr/sbin/sendmail -f root@{DOMAIN} bob@example.test", input_text=message
    )
    received = machine.received(message_id)
    assert verify_all(received.data, machine.dns)["dkimpy"].passed


def test_users_outside_group_postfix_cannot_reach_the_socket(machine: Machine) -> None:
    probe = f"import socket; socket.socket(socket.AF_UNIX).connect('{SOCKET}')"
    refused = machine.run(
        f"setpriv --reuid=nobody --regid=nogroup --clear-groups python3 -c {shlex.quote(probe)}",
        check=False,
    )
    assert refused.returncode != 0
    assert "PermissionError" in refused.stderr, refused.stderr


def test_the_journal_carries_priorities_and_a_reload(machine: Machine) -> None:
    machine.run("systemctl reload reputable")
    deadline = time.monotonic() + 30
    while not any("event=reloaded" in line for line in machine.journal()):
        assert time.monotonic() < deadline, machine.journal()
        time.sleep(0.2)
    assert machine.service("ActiveState", "NRestarts") == {
        "ActiveState": "active",
        "NRestarts": "0",
    }
    tagged = machine.run("journalctl --no-pager -o cat -t reputable").stdout
    assert "event=start" in tagged
    # The "<N>" prefixes became journal priorities: no info line at warning and above.
    warnings = machine.journal("-p", "warning")
    assert not any("level=info" in line for line in warnings), warnings
    assert not any(line.startswith("<") for line in machine.journal())


def test_the_readme_cron_line_reads_the_journal(machine: Machine) -> None:
    """The README's cron line for a journal-only machine, on the journal of the mail sent above."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    (line,) = [
        line
        for line in readme.splitlines()
        if line.startswith("0 7 * * *") and "journalctl" in line
    ]
    command = line.split(None, 6)[6]
    assert "%" not in command  # cron would turn it into a newline
    pipeline = command.split("$(", 1)[1].split(")", 1)[0]
    done = machine.run(pipeline + " --json", check=False)
    assert done.stderr == ""
    data = json.loads(done.stdout)
    messages = data["messages"]
    assert messages["total"] >= 2 and messages["signed"] == messages["total"], data
    assert messages["actions"] == {"accept": messages["total"]}, data
    assert sum(counts["sent"] for counts in data["deliveries"].values()) >= 2, data
    mailed = machine.run(command, check=False)
    assert mailed.returncode == 0 and mailed.stderr == ""
    # cron mails what the job prints: the report exactly when its exit code is not 0.
    assert (mailed.stdout == "") == (done.returncode == 0), (done.returncode, mailed.stdout)


def test_the_installed_service_serves_metrics_on_debian_s_prometheus_client(
    machine: Machine,
) -> None:
    """[metrics] listen set in the packaged config: after a restart, /metrics counts the mail."""
    port = free_port()
    config = "/etc/reputable/reputable.toml"
    machine.run(f'sed -i \'s/^listen = ""$/listen = "127.0.0.1:{port}"/\' {config}')
    assert f'listen = "127.0.0.1:{port}"' in machine.run(f"cat {config}").stdout
    machine.run("systemctl restart reputable")
    send(machine)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        served = answer.read().decode()
    counted = [line for line in served.splitlines() if line.startswith("reputable_messages_total{")]
    assert counted and all('source="internal"' in line for line in counted), served
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) >= 1
    assert 'reputable_key_age_seconds{domain="example.com"' in served
    versions = machine.run("dpkg-query -W -f='${Version}' python3-prometheus-client").stdout
    assert versions.startswith("0.16"), versions


def test_man_pages_are_installed(machine: Machine) -> None:
    page = machine.run("MANWIDTH=80 man -P cat reputable").stdout
    assert "reputable" in page and "keys" in page
    toml = machine.run("MANWIDTH=80 man -P cat 5 reputable.toml").stdout
    assert "socket_group" in toml


def test_stop_removes_the_socket_and_purge_removes_the_user_and_paths(machine: Machine) -> None:
    machine.run("systemctl stop reputable")
    assert machine.service("ActiveState", "Result") == {
        "ActiveState": "inactive",
        "Result": "success",
    }
    assert machine.run(f"test -e {SOCKET}", check=False).returncode == 1
    machine.run("apt-get purge reputable")
    assert machine.run("getent passwd reputable", check=False).returncode == 2
    assert machine.run("getent group reputable", check=False).returncode == 2
    for path in ("/var/lib/reputable", "/var/spool/postfix/reputable", "/etc/reputable"):
        assert machine.run(f"test -e {path}", check=False).returncode == 1, path
