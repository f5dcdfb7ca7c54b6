"""The metrics: what one message adds, the gauges read from the daemon's state, the answers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client.parser import text_string_to_metric_families

from reputable.checks.dmarc import KeyRecord
from reputable.checks.findings import Finding, Status
from reputable.config import Config
from reputable.keys.keyring import Keyring
from reputable.metrics import Metrics, check_kind
from reputable.metrics_http import response
from reputable.runtime import KeyAge, Runtime, RuntimeHolder, signing_policy
from reputable.signing.algorithm import Algorithm
from reputable.signing.signature import SigningKey

MADE = datetime.now(UTC) - timedelta(days=30)


def holder() -> RuntimeHolder:
    config = Config()
    keys = (
        KeyAge("example.com", "s1", "active", MADE),
        KeyAge("example.com", "s2", "pending", MADE),
    )
    return RuntimeHolder(Runtime(config, ("example.com",), Keyring(), signing_policy(config), keys))


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, as a scraper parses it."""
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(selector: str) -> SigningKey:
    private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey("example.com", selector, Algorithm.ED25519_SHA256, private)


def test_each_message_counts_once_by_action_source_signatures_reason_and_failed_kinds() -> None:
    metrics = Metrics(holder())
    listed = [
        Finding("dnsbl.zen.spamhaus.org.192.0.2.1", Status.FAIL, "listed"),
        Finding("dnsbl.bl.spamcop.net.192.0.2.1", Status.FAIL, "listed"),
        Finding("ptr.192.0.2.1", Status.FAIL, "no PTR"),
    ]
    metrics.message("accept", "internal", None, [key("s1")], [], 0.0012)
    metrics.message("accept", "internal", None, [key("s1")], [], 0.0008)
    metrics.message("hold", "internal", None, [key("s1")], listed, 0.003)
    metrics.message("accept", "external", "not_outbound", [], [], 0.0001)
    got = samples(metrics)
    assert got[("reputable_messages_total", (("action", "accept"), ("source", "internal")))] == 2
    assert got[("reputable_messages_total", (("action", "hold"), ("source", "internal")))] == 1
    assert got[("reputable_messages_total", (("action", "accept"), ("source", "external")))] == 1
    signature = (("algorithm", "ed25519-sha256"), ("domain", "example.com"), ("selector", "s1"))
    assert got[("reputable_signatures_total", signature)] == 3
    assert got[("reputable_unsigned_total", (("reason", "not_outbound"),))] == 1
    # Two lists named the IP: one message with a dnsbl failure, counted once, by kind.
    assert got[("reputable_gate_failures_total", (("check", "dnsbl"),))] == 1
    assert got[("reputable_gate_failures_total", (("check", "ptr"),))] == 1
    assert got[("reputable_message_seconds_count", ())] == 4
    assert got[("reputable_message_seconds_bucket", (("le", "0.001"),))] == 2
    assert abs(got[("reputable_message_seconds_sum", ())] - 0.0051) < 1e-9


def test_received_mail_counts_each_method_s_result() -> None:
    metrics = Metrics(holder())
    metrics.inbound([("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass"), ("arc", "none")])
    metrics.inbound([("dkim", "fail"), ("spf", "pass"), ("dmarc", "fail"), ("arc", "none")])
    got = samples(metrics)
    name = "reputable_inbound_results_total"
    assert got[(name, (("method", "dkim"), ("result", "pass")))] == 1
    assert got[(name, (("method", "dkim"), ("result", "fail")))] == 1
    assert got[(name, (("method", "spf"), ("result", "pass")))] == 2
    assert got[(name, (("method", "arc"), ("result", "none")))] == 2
    assert (name, (("method", "dmarc"), ("result", "none"))) not in got


def test_the_gauges_are_the_daemon_s_state_at_the_scrape() -> None:
    state = holder()
    metrics = Metrics(state)
    got = samples(metrics)
    assert not [name for name, _ in got if name in ("reputable_host_check_ok",)]  # no refresh yet
    age = got[
        (
            "reputable_key_age_seconds",
            (("domain", "example.com"), ("selector", "s1"), ("state", "active")),
        )
    ]
    assert abs(age - (time.time() - MADE.timestamp())) < 5
    assert got[("reputable_key_max_age_seconds", ())] == Config().keys.max_age_s
    snapshot = SimpleNamespace(
        findings=(
            Finding("ptr.192.0.2.1", Status.OK, "ok"),
            Finding("helo.192.0.2.1", Status.WARN, "HELO is not the PTR name"),
            Finding("dnsbl.zen.spamhaus.org.192.0.2.1", Status.FAIL, "listed"),
            Finding("dkim.s2.example.com", Status.UNKNOWN, "not checked: DNS fails"),
        ),
        key_records={
            ("s1", "example.com"): KeyRecord.MATCHING,
            ("s2", "example.com"): KeyRecord.WRONG,
        },
    )
    engine: Any = SimpleNamespace(refresher=SimpleNamespace(current=snapshot))
    state.reputation = engine
    got = samples(metrics)
    checks = {
        dict(labels)["check"]: value
        for (name, labels), value in got.items()
        if name == "reputable_host_check_ok"
    }
    assert checks == {
        "ptr.192.0.2.1": 1,
        "helo.192.0.2.1": 1,
        "dnsbl.zen.spamhaus.org.192.0.2.1": 0,
    }
    records = {
        dict(labels)["selector"]: value
        for (name, labels), value in got.items()
        if name == "reputable_key_record_ok"
    }
    assert records == {"s1": 1, "s2": 0}
    build = [labels for name, labels in got if name == "reputable_build_info"]
    assert len(build) == 1 and dict(build[0])["version"]


def test_a_check_s_kind_is_its_first_word() -> None:
    assert check_kind("dnsbl.zen.spamhaus.org.192.0.2.1") == "dnsbl"
    assert check_kind("dns") == "dns"


def test_the_http_answers() -> None:
    metrics = Metrics(holder())
    ok = response("GET", "/metrics", metrics)
    head, _, body = ok.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"reputable_build_info" in body
    assert response("HEAD", "/metrics", metrics).endswith(b"\r\n\r\n")
    assert response("GET", "/other", metrics).startswith(b"HTTP/1.1 404")
    assert response("POST", "/metrics", metrics).startswith(b"HTTP/1.1 405")
