"""The gate's line protocol for Exim: queries read, answers written. (Through a real Exim:
tests/integration/test_exim_gate.py.)"""

from __future__ import annotations

import base64

import pytest

from reputable.checks.findings import Finding, Outcome, Status
from reputable.config import Action, ActionsConfig, Mode
from reputable.exim_gate import BadQuery, Query, _answer, parse_query
from reputable.gate import decide_gate


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_query_is_five_base64_fields_after_the_version() -> None:
    line = " ".join(
        [
            "v1",
            b64("192.0.2.1"),
            b64(""),
            b64("alice@example.com"),
            b64("A <a@example.com>"),
            b64("1x-2"),
        ]
    )
    assert parse_query((line + "\n").encode()) == Query(
        "192.0.2.1", "", "alice@example.com", "A <a@example.com>", "1x-2"
    )


@pytest.mark.parametrize(
    "line",
    [b"", b"v1\n", b"v2 a b c d e\n", b"v1 !! " + b"YQ== " * 4 + b"\n", b"hello world\n"],
)
def test_anything_else_is_a_bad_query(line: bytes) -> None:
    with pytest.raises(BadQuery):
        parse_query(line)


@pytest.mark.parametrize(
    ("action", "verb"),
    [
        (Action.REJECT, "deny"),
        (Action.TEMPFAIL, "defer"),
        (Action.HOLD, "hold"),
        (Action.FLAG, "flag"),
    ],
)
def test_each_action_is_answered_with_the_acl_s_verb_on_one_line(action: Action, verb: str) -> None:
    listed = Finding(
        "dnsbl.bl.example.test.192.0.2.1",
        Status.FAIL,
        "sending IP 192.0.2.1 is listed\r\non bl.example.test",
        "request delisting",
        Outcome.DNSBL,
    )
    gate = decide_gate([listed], ActionsConfig(dnsbl=action), Mode.ENFORCE)
    answer = _answer(gate.action, gate)
    assert answer.split(" ", 1)[0] == verb
    assert "\n" not in answer and "\r" not in answer
    assert all(" " <= c <= "~" for c in answer)
    if verb == "flag":
        assert answer == "flag dnsbl"
    else:
        assert "listed" in answer and "fix: request delisting" in answer
