"""`reputable keys import` end to end: a real OpenDKIM set-up imported, then real mail signed.

The key is made by opendkim-genkey (so the files are OpenDKIM's own), the
record in DNS is the one it wrote to mail.txt, the import runs as the
command an admin would type, the milter runs on the lines the import printed,
and three independent verifiers judge what reputable signed through Postfix.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reputable.keys.record import public_key_base64
from reputable.keys.store import read_store
from tests.integration.daemon import MilterDaemon
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix import PostfixFactory
from tests.integration.harness.sink import SmtpSink
from tests.integration.harness.verifiers import verify_all

pytestmark = pytest.mark.integration

# Debian 12's /etc/opendkim.conf, switched to tables as its README.Debian suggests.
OPENDKIM_CONF = """\
Syslog			yes
SyslogSuccess		yes
Canonicalization	relaxed/simple
OversignHeaders		From
KeyTable		file:{etc}/key.table
SigningTable		refile:{etc}/signing.table
UserID			opendkim
UMask			007
Socket			local:/run/opendkim/opendkim.sock
PidFile			/run/opendkim/opendkim.pid
InternalHosts		127.0.0.1, ::1
TrustAnchorFile		/usr/share/dns/root.key
"""


@dataclass
class Imported:
    code: int
    out: str
    err: str

    def toml(self) -> dict[str, Any]:
        """The reputable.toml lines the import told the admin to put in place."""
        block = self.out.split("Put these lines in ", 1)[1].split(":\n", 1)[1]
        return tomllib.loads(textwrap.dedent(block.split("Next steps:", 1)[0]))


def run_import(opendkim_conf: Path, config: Path) -> Imported:
    """`reputable keys import --opendkim-conf F --config C`, as the admin would type it."""
    command = [sys.executable, "-m", "reputable", "keys", "import"]
    done = subprocess.run(
        [*command, "--opendkim-conf", str(opendkim_conf), "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return Imported(done.returncode, done.stdout, done.stderr)


def message(from_: str, message_id: str) -> bytes:
    return (
        f"From: Alice <{from_}>\r\n"
        "To: Bob <bob@example.test>\r\n"
        "Subject: moved from OpenDKIM\r\n"
        "Date: Fri, 27 Nov 2026 05:00:00 +0000\r\n"
        f"Message-ID: <{message_id}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Same keys, same selector, new signer.\r\n"
    ).encode()


def test_imported_opendkim_keys_sign_mail_that_verifies(
    dns_server: DnsServer,
    smtp_sink: SmtpSink,
    postfix_factory: PostfixFactory,
    tmp_path: Path,
) -> None:
    keys, etc = tmp_path / "dkimkeys", tmp_path / "etc"
    keys.mkdir(mode=0o700)
    etc.mkdir()
    subprocess.run(
        ["opendkim-genkey", "-b", "2048", "-d", "example.org", "-s", "mail", "-D", str(keys)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (etc / "key.table").write_text(
        f"mail._domainkey.example.org\texample.org:mail:{keys / 'mail.private'}\n"
    )
    (etc / "signing.table").write_text("*@example.org\tmail._domainkey.example.org\n")
    (etc / "opendkim.conf").write_text(OPENDKIM_CONF.format(etc=etc))
    # What the admin published when OpenDKIM was set up: mail.txt, as opendkim-genkey wrote it.
    published = re.findall(r'"([^"]*)"', (keys / "mail.txt").read_text())
    dns_server.set_txt("mail._domainkey.example.org", *published)
    store = tmp_path / "store"
    config = tmp_path / "reputable.toml"
    config.write_text(f'[signing]\nkeys = "{store}"\n')
    sources = {p: p.read_bytes() for p in keys.iterdir()}

    imported = run_import(etc / "opendkim.conf", config)
    print(imported.out, imported.err)
    assert imported.code == 0, imported.err
    assert (
        f"example.org selector mail (rsa-sha256, 2048 bits) ← {keys / 'mail.private'}"
        in imported.out
    )
    assert {p: p.read_bytes() for p in keys.iterdir()} == sources
    (stored,) = read_store(store).keys
    assert f"p={public_key_base64(stored.key.private_key)}" in "".join(published)

    lines = imported.toml()
    milter_dir = tmp_path / "milter"
    milter_dir.mkdir()
    milter = MilterDaemon(
        milter_dir,
        store,
        lines["signing"]["domains"],
        dns_server.address,
        algorithms=lines["signing"]["algorithms"],
        canonicalization=lines["signing"]["canonicalization"],
        internal_hosts=lines["trust"]["internal_hosts"],
    ).start()
    try:
        postfix = postfix_factory(milter=milter.postfix_socket, banner_probe=False)
        message_id = f"{uuid.uuid4().hex}@example.org"
        postfix.submit_smtp(
            message("alice@example.org", message_id), "alice@example.org", ["bob@example.test"]
        )
        received = smtp_sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60)
    finally:
        milter.stop()

    results = verify_all(received.data, dns_server)
    results["mail-dkim"] = results["mail-dkim"].only("rsa")
    for result in results.values():
        print(result)  # the verifiers' own words, shown by `pytest -rP`
        assert result.passed, f"{result}\n{result.output}"
        (signature,) = result.results
        assert (signature.domain, signature.selector) == ("example.org", "mail")
    head = received.data.partition(b"\r\n\r\n")[0]
    tampered = head + b"\r\n\r\nSame keys, other words.\r\n"
    for name, result in verify_all(tampered, dns_server).items():
        assert not result.passed, f"a tampered copy passed {name}: {result}"
