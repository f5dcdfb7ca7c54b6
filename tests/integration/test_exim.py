"""A real Exim 4.96 signs with reputable's keys, as the README's Exim section sets it up.

The store is made and shared with `reputable keys new` and `reputable keys
share Debian-exim`; Exim's transport has the README's lines. Mail submitted
over SMTP and with `exim -bm` reaches the sink signed, and every signature
verifies with Mail::DKIM, opendkim-testmsg and dkimpy. After `keys rotate`
and `keys activate`, the next message through the same running Exim carries
the new selector and verifies.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reputable.keys.record import record_name, split_strings
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.exim import (
    EximInstance,
    ensure_user,
    exim_binary,
    readme_transport_lines,
)
from tests.integration.harness.scratch import ScratchRecords
from tests.integration.harness.sink import ReceivedMessage, SmtpSink
from tests.integration.harness.verifiers import verify_all

pytestmark = pytest.mark.integration

DOMAIN = "example.com"


def reputable(config: Path, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "reputable", "keys", *arguments, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def publish(records: ScratchRecords, dns: DnsServer, output: str) -> str:
    """Publish the TXT record a `keys` command printed; its selector."""
    named = re.search(r"name:\s+(\S+)\._domainkey\.", output)
    assert named is not None, output
    selector = named[1]
    value = "".join(re.findall(r'"([^"]*)"', output.split("value", 1)[1].split("zone file:", 1)[0]))
    records.own(record_name(selector, DOMAIN))
    dns.set_txt(record_name(selector, DOMAIN), *split_strings(value))
    return selector


@pytest.fixture
def exim(
    dns_server: DnsServer, records: ScratchRecords, smtp_sink: SmtpSink
) -> Iterator[tuple[EximInstance, Path, str]]:
    exim_binary()
    ensure_user()
    # Debian-exim must enter every directory above the store and the spool.
    base = Path(tempfile.mkdtemp(prefix="reputable-exim-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    keys = base / "keys"
    config = base / "reputable.toml"
    host, port = dns_server.address
    config.write_text(
        f'[signing]\ndomains = ["{DOMAIN}"]\nkeys = "{keys}"\n'
        f'[dns]\nnameservers = ["{host}:{port}"]\n'
        f'[keys]\nverify_nameservers = ["{host}:{port}"]\n'
    )
    selector = publish(records, dns_server, reputable(config, "new", DOMAIN))
    assert "shared with group Debian-exim" in reputable(config, "share", "Debian-exim")
    instance = EximInstance(base / "exim", keys, smtp_sink.address)
    instance.workdir.mkdir(mode=0o755)
    instance.start()
    try:
        yield instance, config, selector
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)


def message(subject: str) -> tuple[str, bytes]:
    message_id = f"{uuid.uuid4()}@{DOMAIN}"
    data = (
        f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n"
        "Signed by Exim with reputable's key.\r\n"
    )
    return message_id, data.encode()


def received(instance: EximInstance, sink: SmtpSink, message_id: str) -> ReceivedMessage:
    """The relayed copy; on a timeout, what Exim's logs say."""
    try:
        return sink.wait_for_header("Message-ID", f"<{message_id}>", timeout=60)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{instance.logs()}") from None


def signed_by(received: ReceivedMessage) -> list[str]:
    return [value for name, value in received.headers if name.lower() == "dkim-signature"]


def check_verifies(
    instance: EximInstance, received: ReceivedMessage, dns: DnsServer, selector: str
) -> None:
    signatures = signed_by(received)
    assert len(signatures) == 1, f"{received.header_bytes.decode()}\n{instance.logs()}"
    (signature,) = signatures
    # Which signer: Exim writes q=dns/txt (RFC 6376's default, which reputable leaves out).
    assert ("q=dns/txt" in signature) == (instance.transport == ""), signature
    assert f"s={selector};" in signature.replace(" ", ""), signature
    assert f"d={DOMAIN};" in signature.replace(" ", ""), signature
    results = verify_all(received.data, dns)
    for result in results.values():
        print(result)  # the verifiers' own words, shown by `pytest -rP`
    assert results["mail-dkim"].passed, results["mail-dkim"]
    assert results["opendkim"].passed, results["opendkim"]
    assert results["dkimpy"].passed, results["dkimpy"]


def test_mail_over_smtp_and_from_the_command_line_is_signed_by_exim(
    exim: tuple[EximInstance, Path, str], smtp_sink: SmtpSink, dns_server: DnsServer
) -> None:
    instance, _, selector = exim
    message_id, data = message("over SMTP")
    with smtplib.SMTP("127.0.0.1", instance.port, timeout=30) as smtp:
        smtp.sendmail(f"alice@{DOMAIN}", ["bob@example.net"], data)
    check_verifies(instance, received(instance, smtp_sink, message_id), dns_server, selector)
    message_id, data = message("exim -bm")
    instance.submit_local(data.replace(b"\r\n", b"\n"), f"alice@{DOMAIN}", ["bob@example.net"])
    check_verifies(instance, received(instance, smtp_sink, message_id), dns_server, selector)


def test_a_rotation_reaches_the_running_exim_s_next_message(
    exim: tuple[EximInstance, Path, str],
    smtp_sink: SmtpSink,
    dns_server: DnsServer,
    records: ScratchRecords,
) -> None:
    instance, config, old = exim
    new = publish(records, dns_server, reputable(config, "rotate", DOMAIN))
    assert new != old
    reputable(config, "activate", DOMAIN)
    message_id, data = message("after the rotation")
    with smtplib.SMTP("127.0.0.1", instance.port, timeout=30) as smtp:
        smtp.sendmail(f"alice@{DOMAIN}", ["bob@example.net"], data)
    check_verifies(instance, received(instance, smtp_sink, message_id), dns_server, new)


def test_mail_from_a_domain_without_a_key_goes_unsigned(
    exim: tuple[EximInstance, Path, str], smtp_sink: SmtpSink
) -> None:
    instance, _, _ = exim
    message_id, data = message("not ours")
    data = data.replace(f"From: Alice <alice@{DOMAIN}>".encode(), b"From: <carol@example.org>")
    with smtplib.SMTP("127.0.0.1", instance.port, timeout=30) as smtp:
        smtp.sendmail("carol@example.org", ["bob@example.net"], data)
    assert signed_by(received(instance, smtp_sink, message_id)) == []


def test_reputable_sign_as_the_transport_filter_signs_in_exim(
    exim: tuple[EximInstance, Path, str], smtp_sink: SmtpSink, dns_server: DnsServer
) -> None:
    """The README's other path: Exim pipes each message through `reputable sign`."""
    native, config, selector = exim
    base = config.parent
    # Debian-exim runs the filter: a copy of the code where it may read, on Debian's python3
    # and libraries (the Debian package's /usr/bin/reputable is the same).
    library = base / "lib"
    shutil.copytree(
        Path(__file__).resolve().parents[2] / "reputable",
        library / "reputable",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    filter_line = readme_filter_line().replace(
        "/usr/bin/reputable sign",
        f"/usr/bin/env PYTHONPATH={library} /usr/bin/python3 -m reputable sign --config {config}",
    )
    instance = EximInstance(base / "exim-filter", native.keys, smtp_sink.address)
    instance.transport = filter_line + "\n"
    instance.workdir.mkdir(mode=0o755)
    instance.start()
    try:
        message_id, data = message("through the filter")
        with smtplib.SMTP("127.0.0.1", instance.port, timeout=30) as smtp:
            smtp.sendmail(f"alice@{DOMAIN}", ["bob@example.net"], data)
        check_verifies(instance, received(instance, smtp_sink, message_id), dns_server, selector)
    finally:
        instance.stop()


def readme_filter_line() -> str:
    """The transport_filter line of the README's Exim section."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if "transport_filter = " in line]
    return line


def test_rsa_and_ed25519_both_sign_in_exim(
    exim: tuple[EximInstance, Path, str],
    smtp_sink: SmtpSink,
    dns_server: DnsServer,
    records: ScratchRecords,
) -> None:
    native, config, rsa = exim
    ed25519 = publish(
        records, dns_server, reputable(config, "new", DOMAIN, "--algorithm", "ed25519")
    )
    base = config.parent
    instance = EximInstance(base / "exim-dual", native.keys, smtp_sink.address)
    instance.transport = readme_transport_lines(native.keys, "RSA and Ed25519")
    instance.workdir.mkdir(mode=0o755)
    instance.start()
    try:
        message_id, data = message("both algorithms")
        with smtplib.SMTP("127.0.0.1", instance.port, timeout=30) as smtp:
            smtp.sendmail(f"alice@{DOMAIN}", ["bob@example.net"], data)
        delivered = received(instance, smtp_sink, message_id)
    finally:
        instance.stop()
    assert len(signed_by(delivered)) == 2, instance.logs()
    results = verify_all(delivered.data, dns_server)
    for result in results.values():
        print(result)  # the verifiers' own words, shown by `pytest -rP`
    assert {(r.selector, r.algorithm) for r in results["dkimpy"].results} == {
        (rsa, "rsa-sha256"),
        (ed25519, "ed25519-sha256"),
    }
    assert results["dkimpy"].passed, results["dkimpy"]
    assert results["opendkim"].passed, results["opendkim"]
    assert results["mail-dkim"].only("rsa").passed, results["mail-dkim"]  # it has no Ed25519
