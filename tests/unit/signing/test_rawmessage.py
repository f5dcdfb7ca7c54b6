"""parse_message: what it accepts, what it keeps byte for byte, and what it refuses."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reputable.signing.headers import HeaderField
from reputable.signing.rawmessage import (
    MessageFormatError,
    RawMessage,
    parse_message,
    render_message,
)


def test_crlf_message() -> None:
    message = parse_message(b"From: joe@example.com\r\nSubject: hi\r\n\r\nbody\r\n")
    assert message == RawMessage(
        (HeaderField(b"From", b" joe@example.com"), HeaderField(b"Subject", b" hi")),
        b"body\r\n",
        b"\r\n",
    )


def test_lf_message_becomes_crlf_and_remembers_lf() -> None:
    message = parse_message(b"From: joe@example.com\nTo: a,\n  b\n\nline 1\n\nline 3\n")
    assert message.fields == (
        HeaderField(b"From", b" joe@example.com"),
        HeaderField(b"To", b" a,\r\n  b"),
    )
    assert message.body == b"line 1\r\n\r\nline 3\r\n"
    assert message.line_ending == b"\n"


def test_mixed_line_ends_keep_the_majority() -> None:
    assert parse_message(b"A: 1\r\nB: 2\r\n\r\nx\ny\n").line_ending == b"\r\n"
    assert parse_message(b"A: 1\nB: 2\n\nx\r\ny\n").line_ending == b"\n"
    assert parse_message(b"A: 1\r\nB: 2\n\nx\r\ny\n").body == b"x\r\ny\r\n"


def test_folds_are_kept_exactly() -> None:
    message = parse_message(b"Subject: a\r\n\t b  \r\n   c\r\nX: y\r\n\r\n")
    assert message.fields[0] == HeaderField(b"Subject", b" a\r\n\t b  \r\n   c")


def test_value_is_everything_after_the_first_colon() -> None:
    message = parse_message(b"X-Time:12:00:01 \r\nSubject:\r\n\r\n")
    assert message.fields == (HeaderField(b"X-Time", b"12:00:01 "), HeaderField(b"Subject", b""))


def test_obsolete_space_before_colon_is_kept_in_the_name() -> None:
    [field] = parse_message(b"Subject \t: hi\r\n\r\n").fields
    assert field == HeaderField(b"Subject \t", b" hi")
    assert field.key == b"subject"


def test_final_line_without_newline_is_kept() -> None:
    assert parse_message(b"From: j\n\na\nlast").body == b"a\r\nlast"


def test_header_only_messages_have_an_empty_body() -> None:
    assert parse_message(b"From: j\r\n").body == b""
    assert parse_message(b"From: j\r\nSubject: no newline").fields[-1] == HeaderField(
        b"Subject", b" no newline"
    )
    assert parse_message(b"From: j\r\n\r\n").body == b""


def test_only_the_first_empty_line_ends_the_header() -> None:
    message = parse_message(b"From: j\n\n\nNot: a header\n\n")
    assert message.body == b"\r\nNot: a header\r\n\r\n"


def test_nul_and_invalid_utf8_are_kept_as_bytes() -> None:
    data = b"Subject: \xff\xfe\x00 caf\xc3\xa9\r\nX-Bin: \x80\r\n\r\n\x00\xff body\r\n"
    message = parse_message(data)
    assert message.fields[0].value == b" \xff\xfe\x00 caf\xc3\xa9"
    assert message.body == b"\x00\xff body\r\n"


def test_bare_cr_is_not_a_line_end() -> None:
    message = parse_message(b"Subject: a\rb\r\n\r\nx\ry\r\n")
    assert message.fields[0].value == b" a\rb"
    assert message.body == b"x\ry\r\n"


def test_thousands_of_header_lines() -> None:
    received = b"".join(b"Received: from h%d by h%d\r\n" % (i, i + 1) for i in range(1500))
    folded = b"References: <0@x>" + b"".join(b"\r\n <%d@x>" % i for i in range(1, 1200))
    data = received + folded + b"\r\nFrom: j\r\n\r\nbody\r\n"
    start = time.perf_counter()
    message = parse_message(data)
    assert time.perf_counter() - start < 1.0
    assert len(message.fields) == 1502
    assert message.fields[1500].value.count(b"\r\n ") == 1199
    assert message.fields[-1] == HeaderField(b"From", b" j")


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        (b"", "empty input", "header"),
        (b"\r\nbody", "line 1", "empty"),
        (b"\nbody\n", "line 1", "empty"),
        (b"Hello world\n\nbody\n", "line 1", "without a colon"),
        (b"From: a\nTo: b\njust text\n\nbody", "line 3", "without a colon"),
        (b" folded: first\n\n", "line 1", "whitespace"),
        (b"From joe@example.com Mon Jan  1 00:00:00 2024\nFrom: j\n\n", "line 1", "field name"),
        (b"From: j\n: no name\n\n", "line 2", "field name"),
        (b"From: j\nBad\xffName: x\n\n", "line 2", "field name"),
    ],
)
def test_not_a_message(data: bytes, where: str, what: str) -> None:
    with pytest.raises(MessageFormatError) as raised:
        parse_message(data)
    assert where in str(raised.value) and what in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_error_shows_the_line_shortened() -> None:
    with pytest.raises(MessageFormatError, match=r"line 1: .*'x{60}'\.\.\.$"):
        parse_message(b"x" * 500 + b"\n\n")


def test_render_puts_the_line_ending_back() -> None:
    data = b"From: j\nTo: a,\n b\n\nline\n"
    message = parse_message(data)
    assert render_message(message.fields, message.body, message.line_ending) == data
    crlf = render_message(message.fields, message.body)
    assert crlf == data.replace(b"\n", b"\r\n")


names = st.from_regex(rb"[!-9;-~]{1,20}", fullmatch=True)
values = st.lists(
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    min_size=1,
    max_size=4,
).map(b"\r\n ".join)


@given(
    st.lists(st.tuples(names, values), min_size=1, max_size=20),
    st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n")),
)
def test_render_then_parse_round_trips(fields: list[tuple[bytes, bytes]], body: bytes) -> None:
    original = tuple(HeaderField(name, value) for name, value in fields)
    message = parse_message(render_message(original, body))
    assert message.fields == original
    assert message.body == body
