"""The milter session in-process, through pymilter's TestCtx: no MTA, no socket."""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import dkim
import Milter
import pytest
from Milter import testctx

from reputable.config import Config, OnError, SigningConfig, TrustConfig
from reputable.keys.record import record_value
from reputable.log import record_fields
from reputable.milter import session as session_module
from reputable.milter.session import Session
from reputable.runtime import Runtime, RuntimeHolder, load_runtime
from reputable.signing.algorithm import Algorithm


class Ctx(testctx.TestCtx):
    """TestCtx that records added headers instead of editing a parsed message."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list[tuple[str, str, int]] = []

    def addheader(self, field: str, value: str, idx: int) -> None:
        self.added.append((field, value, idx))


HEADERS = [
    ("From", b" Alice <alice@example.com>"),
    ("To", b" bob@example.net"),
    ("Subject", b" a folded\n\tsubject line"),
    ("Message-ID", b" <1@example.com>"),
]
BODY = b"Hello,\r\n\r\nthis is the body.\r\n"


def runtime_for(keys_dir: Path, **trust: Any) -> Runtime:
    signing = SigningConfig(
        domains=("example.com",),
        keys=keys_dir,
        algorithms=(Algorithm.RSA_SHA256, Algorithm.ED25519_SHA256),
    )
    config = Config(signing=signing, trust=replace(TrustConfig(), **trust))
    return load_runtime(config)


@pytest.fixture
def holder(keys_dir: Path) -> RuntimeHolder:
    holder = RuntimeHolder(runtime_for(keys_dir))
    Milter.factory = lambda: Session(holder)
    return holder


def run_message(
    ctx: Ctx,
    client: str = "127.0.0.1",
    auth: str | None = None,
    hostname: str = "client.example",
    port: int = 40000,
    mail_from: str = "<alice@example.com>",
    headers: list[tuple[str, bytes]] = HEADERS,
    body: bytes = BODY,
) -> list[int]:
    """Drive the callbacks as libmilter does; returns every callback's answer."""
    answers = [ctx._negotiate()]
    family = socket.AF_INET6 if ":" in client else socket.AF_INET
    answers.append(Milter.connect_callback(ctx, hostname, family, (client, port)))
    if auth:
        ctx._setsymval("{auth_authen}", auth)
    ctx._setsymval("i", "4Xy1")
    answers.append(ctx._envfrom(mail_from))
    answers.append(ctx._data())
    for name, value in headers:
        answers.append(ctx._priv.header_bytes(name, value))
    answers.append(ctx._eoh())
    if answers[-1] != Milter.CONTINUE:
        return answers
    for i in range(0, len(body), 7):
        answers.append(ctx._priv.body(body[i : i + 7]))
    answers.append(ctx._eom())
    return answers


def as_message(ctx: Ctx, headers: list[tuple[str, bytes]] = HEADERS, body: bytes = BODY) -> bytes:
    added = b"".join(
        f"{name}:{value}".encode().replace(b"\n", b"\r\n") + b"\r\n" for name, value, _ in ctx.added
    )
    original = b"".join(
        name.encode() + b":" + value.replace(b"\n", b"\r\n") + b"\r\n" for name, value in headers
    )
    return added + original + b"\r\n" + body


def dns_for(runtime: Runtime) -> Any:
    records = {
        f"{k.selector}._domainkey.{k.domain}.".encode(): record_value(
            k.algorithm, k.private_key
        ).encode()
        for keys in runtime.keyring.by_domain.values()
        for k in keys
    }
    return lambda name, timeout=5: records.get(name)


def verifies(message: bytes, index: int, runtime: Runtime) -> bool:
    try:
        return bool(dkim.DKIM(message).verify(idx=index, dnsfunc=dns_for(runtime)))
    except dkim.DKIMException:
        return False


def message_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [record_fields(r) for r in caplog.records if "action" in record_fields(r)]


def test_internal_client_is_dual_signed_and_verifies(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    ctx = Ctx()
    answers = run_message(ctx)
    assert answers[-1] == Milter.ACCEPT
    assert [(name, idx) for name, _, idx in ctx.added] == [
        ("DKIM-Signature", 0),
        ("DKIM-Signature", 0),
    ]
    assert all(value.startswith(" v=1;") for _, value, _ in ctx.added)
    message = as_message(ctx)
    for index in range(2):
        assert verifies(message, index, holder.current), index
    (line,) = message_lines(caplog)
    assert line["queue_id"] == "4Xy1"
    assert line["action"] == "accept"
    assert line["source"] == "internal"
    assert line["from_domain"] == "example.com"
    assert sorted(str(line["dkim"]).split(",")) == ["example.com/e1", "example.com/r1"]
    assert float(str(line["ms"])) > 0


def test_tampered_body_fails_verification(holder: RuntimeHolder) -> None:
    ctx = Ctx()
    run_message(ctx)
    message = as_message(ctx).replace(b"the body", b"the b0dy")
    assert verifies(as_message(ctx), 0, holder.current)
    assert not verifies(message, 0, holder.current)
    assert not verifies(message, 1, holder.current)


def test_external_client_passes_untouched_without_body(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    ctx = Ctx()
    answers = run_message(ctx, client="198.51.100.7")
    assert answers[-1] == Milter.ACCEPT  # at end of headers: the body is never sent
    assert ctx.added == []
    (line,) = message_lines(caplog)
    assert line["reason"] == "not_outbound"
    assert line["dkim"] == "none"


def test_authenticated_client_is_signed(holder: RuntimeHolder) -> None:
    ctx = Ctx()
    assert run_message(ctx, client="2001:db8::5", auth="alice")[-1] == Milter.ACCEPT
    assert len(ctx.added) == 2


def test_two_from_headers_are_not_signed(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "reputable")
    ctx = Ctx()
    run_message(ctx, headers=[*HEADERS, ("From", b" mallory@example.com")])
    assert ctx.added == []
    assert message_lines(caplog)[0]["reason"] == "multiple_from"


def test_failure_inside_a_message_is_a_tempfail(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "reputable")

    class Exploding(session_module.MessageSigner):  # type: ignore[misc,name-defined]
        def body(self, chunk: bytes) -> None:
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(session_module, "MessageSigner", Exploding)
    ctx = Ctx()
    answers = run_message(ctx)
    assert Milter.TEMPFAIL in answers
    assert ctx._reply is not None and ctx._reply[0] == "451"
    lines = [record_fields(r) for r in caplog.records]
    error = next(line for line in lines if line.get("event") == "error")
    assert error["queue_id"] == "4Xy1"
    assert message_lines(caplog)[-1]["action"] == "tempfail"


def test_on_error_accept_lets_the_message_through(
    holder: RuntimeHolder, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_for(keys_dir)
    milter_config = replace(runtime.config.milter, on_error=OnError.ACCEPT)
    holder.replace(replace(runtime, config=replace(runtime.config, milter=milter_config)))

    def explode(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(session_module, "decide", explode)
    ctx = Ctx()
    answers = run_message(ctx)
    assert answers[-1] == Milter.ACCEPT
    assert ctx.added == []


def test_reload_applies_to_the_next_message(holder: RuntimeHolder, keys_dir: Path) -> None:
    holder.replace(runtime_for(keys_dir, internal_hosts=(ipaddress.ip_network("192.0.2.0/24"),)))
    ctx = Ctx()
    run_message(ctx, client="127.0.0.1")
    assert ctx.added == []
    ctx = Ctx()
    run_message(ctx, client="192.0.2.9")
    assert len(ctx.added) == 2


def test_header_leading_space_is_negotiated(holder: RuntimeHolder) -> None:
    ctx = Ctx()
    ctx._negotiate()
    assert ctx._protocol & Milter.P_HDR_LEADSPC
    assert not ctx._protocol & Milter.P_NODATA  # data() is implemented (see session.data)
    assert ctx._protocol & Milter.P_NORCPT  # envrcpt is not asked for


def test_sendmail_submission_is_local(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture
) -> None:
    """Postfix's cleanup presents non_smtpd_milters mail as localhost, 127.0.0.1, port 0."""
    caplog.set_level(logging.INFO, "reputable")
    holder.replace(runtime_for(holder.current.config.signing.keys, internal_hosts=()))
    ctx = Ctx()
    run_message(ctx, hostname="localhost", port=0)
    assert len(ctx.added) == 2
    ctx = Ctx()
    run_message(ctx, hostname="localhost", port=40000)  # a real TCP client: not local
    assert ctx.added == []
    lines = message_lines(caplog)
    assert [(str(line["source"]), str(line["client"])) for line in lines] == [
        ("local", "local"),
        ("external", "127.0.0.1"),
    ]


def test_headers_and_body_need_no_reply_and_failures_are_answered_later(
    holder: RuntimeHolder, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = Ctx()
    ctx._negotiate()
    assert ctx._protocol & Milter.P_NR_HDR  # no round trip per header
    assert ctx._protocol & Milter.P_NR_BODY
    caplog.set_level(logging.INFO, "reputable")

    def broken(raw: bytes) -> bytes:
        raise RuntimeError("header parser on fire")

    monkeypatch.setattr(session_module, "header_value", broken)
    ctx = Ctx()
    answers = run_message(ctx)
    # Each header answers NOREPLY (the MTA is not waiting); end of headers answers the failure.
    assert answers[4 : 4 + len(HEADERS)] == [Milter.NOREPLY] * len(HEADERS)
    assert answers[-1] == Milter.TEMPFAIL
    errors = [record_fields(r) for r in caplog.records if record_fields(r).get("event") == "error"]
    assert len(errors) == 1  # logged once, not once per header
    assert message_lines(caplog)[-1]["reason"] == "internal_error"
    ctx = Ctx()  # the next message on a new connection is not affected
    monkeypatch.undo()
    assert run_message(ctx)[-1] == Milter.ACCEPT
