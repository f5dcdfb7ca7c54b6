"""/metrics of a real `reputable milter` behind a real Postfix, scraped over HTTP.

The counters must equal what the milter's own log says it did, message by
message; the gauges must be the host's state (a host in good standing, its
key published); idle connections to the metrics port must not hold up mail,
and are closed; an address already taken stops the start with exit 78.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reputable.metrics_http import MAX_CLIENTS, READ_TIMEOUT_S
from tests.integration.daemon import MilterDaemon, free_port
from tests.integration.harness.dnsserver import DnsServer
from tests.integration.harness.postfix import PostfixFactory, PostfixInstance
from tests.integration.harness.scratch import ScratchRecords
from tests.integration.test_report import host_in_good_standing

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def message(author: str, subject: str) -> bytes:
    return (
        f"From: <{author}>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.com>\r\n\r\nHello.\r\n"
    ).encode()


def scrape(port: int) -> Samples:
    """GET /metrics as Prometheus does, parsed by the client library's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def named(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (metric, labels), value in samples.items() if metric == name}


@pytest.fixture
def daemon(
    dns_server: DnsServer,
    records: ScratchRecords,
    tmp_path: Path,
    postfix_factory: PostfixFactory,
) -> Iterator[tuple[MilterDaemon, PostfixInstance, int]]:
    keys = tmp_path / "keys"
    host_in_good_standing(records, dns_server, keys)
    port = free_port()
    host, dns_port = dns_server.address
    milter = MilterDaemon(tmp_path, keys, ["example.com"], dns_server.address)
    milter.extra = (
        f'[keys]\nverify_nameservers = ["{host}:{dns_port}"]\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    )
    milter.start()
    milter.wait_for_event("host_refreshed")
    postfix = postfix_factory(milter=milter.postfix_socket)
    try:
        yield milter, postfix, port
    finally:
        milter.stop()


def test_the_counters_are_what_the_log_says_and_the_gauges_the_host_s_state(
    daemon: tuple[MilterDaemon, PostfixInstance, int],
) -> None:
    milter, postfix, port = daemon
    sent = [("alice@example.com", f"signed{n}") for n in range(3)]
    sent.append(("someone@elsewhere.example", "foreign"))
    for author, subject in sent:
        postfix.submit_smtp(message(author, subject), author, ["bob@example.net"])
    lines = milter.wait_for_messages(len(sent))
    samples = scrape(port)

    by_action = Counter((line["action"], line["source"]) for line in lines)
    messages = named(samples, "reputable_messages_total")
    assert {(dict(k)["action"], dict(k)["source"]): v for k, v in messages.items()} == by_action
    assert sum(messages.values()) == len(sent)
    signed = [line for line in lines if line["dkim"] != "none"]
    assert len(signed) == 3
    assert named(samples, "reputable_signatures_total") == {
        (("algorithm", "rsa-sha256"), ("domain", "example.com"), ("selector", "s1")): 3.0
    }
    reasons = Counter(line["reason"] for line in lines if line["dkim"] == "none")
    unsigned = named(samples, "reputable_unsigned_total")
    assert {dict(k)["reason"]: v for k, v in unsigned.items()} == reasons
    assert samples[("reputable_message_seconds_count", ())] == len(sent)
    spent = sum(float(line["ms"]) for line in lines) / 1000
    assert abs(samples[("reputable_message_seconds_sum", ())] - spent) < 0.001 * len(sent)
    assert named(samples, "reputable_gate_failures_total") == {}

    checks = {dict(k)["check"]: v for k, v in named(samples, "reputable_host_check_ok").items()}
    assert checks["ptr.192.0.2.25"] == 1.0, checks
    assert checks["dkim.s1.example.com"] == 1.0, checks
    assert all(value in (0.0, 1.0) for value in checks.values())
    assert named(samples, "reputable_key_record_ok") == {
        (("domain", "example.com"), ("selector", "s1")): 1.0
    }
    (age,) = named(samples, "reputable_key_age_seconds").items()
    assert dict(age[0]) == {"domain": "example.com", "selector": "s1", "state": "active"}
    assert 0 < age[1] < 3600
    (build,) = named(samples, "reputable_build_info").items()
    assert build[1] == 1.0 and dict(build[0])["version"]

    # The counters move with the next message.
    postfix.submit_smtp(message("alice@example.com", "later"), "alice@example.com", ["b@x.test"])
    milter.wait_for_messages(len(sent) + 1)
    again = named(scrape(port), "reputable_messages_total")
    assert sum(again.values()) == len(sent) + 1


def test_idle_connections_to_the_metrics_port_are_closed_and_mail_goes_on(
    daemon: tuple[MilterDaemon, PostfixInstance, int],
) -> None:
    milter, postfix, port = daemon
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(40)]
    try:
        # Past the cap, a connection is closed at once: the server reads no more from it.
        time.sleep(0.5)
        closed_at_once = 0
        for sock in idle:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                closed_at_once += sock.recv(1) == b""
        assert closed_at_once == len(idle) - MAX_CLIENTS
        postfix.submit_smtp(
            message("alice@example.com", "meanwhile"), "alice@example.com", ["b@x.test"]
        )
        (line,) = milter.wait_for_messages(1)
        assert line["dkim"] == "example.com/s1"
        # The rest are closed once they have sent no request for READ_TIMEOUT_S.
        time.sleep(READ_TIMEOUT_S + 1)
        for sock in idle:
            sock.setblocking(True)
            assert sock.recv(1) == b""
        assert sum(named(scrape(port), "reputable_messages_total").values()) == 1
    finally:
        for sock in idle:
            sock.close()


def test_an_address_already_taken_stops_the_start_naming_the_key(
    dns_server: DnsServer, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        milter = MilterDaemon(tmp_path, tmp_path / "keys", ["example.com"], dns_server.address)
        milter.extra = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        milter.write_config()
        done = subprocess.run(
            [sys.executable, "-m", "reputable", "milter", "--config", str(milter.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 78, done.stderr
    assert "Traceback" not in done.stderr
    assert f'{milter.config_path}: metrics.listen = "127.0.0.1:{port}"' in done.stderr
    assert "a free address this user may listen on (Address already in use)" in done.stderr
