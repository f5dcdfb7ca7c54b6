"""Log lines are data: fields written and read back, in logfmt and JSON."""

from __future__ import annotations

import io
import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from reputable.config import LogConfig, LogFormat
from reputable.log import Field, JsonFormatter, LogfmtFormatter, emit, format_value, parse_logfmt


def render(formatter: logging.Formatter, fields: dict[Field, object]) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    log = logging.getLogger("reputable.test")
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    emit(log, logging.INFO, fields)
    return stream.getvalue().strip()


def test_logfmt_round_trip() -> None:
    fields: dict[Field, object] = {
        Field.QUEUE_ID: "4Xy1",
        Field.ACTION: "accept",
        Field.FROM_DOMAIN: "example.com",
        Field.DKIM: "example.com/s1,example.com/e1",
        Field.REASON: None,
        Field.DETAIL: 'two "words"\nand a line',
        Field.MS: "1.40",
    }
    line = render(LogfmtFormatter(timestamps=False), fields)
    assert line.startswith("level=info logger=test ")
    parsed = parse_logfmt(line)
    assert parsed["queue_id"] == "4Xy1"
    assert parsed["dkim"] == "example.com/s1,example.com/e1"
    assert parsed["detail"] == 'two "words"\nand a line'
    assert "reason" not in parsed
    assert "\n" not in line


def test_json_lines() -> None:
    line = render(JsonFormatter(), {Field.ACTION: "accept", Field.MS: "0.5"})
    data = json.loads(line)
    assert data["action"] == "accept"
    assert data["level"] == "info"


def test_configured_format_is_used(tmp_path: object) -> None:
    from reputable.log import configure_logging

    configure_logging(LogConfig(format=LogFormat.JSON))
    root = logging.getLogger("reputable")
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    configure_logging(LogConfig())
    assert isinstance(root.handlers[0].formatter, LogfmtFormatter)


@given(st.text(max_size=60))
def test_any_value_reads_back(value: str) -> None:
    line = f"k={format_value(value)} z=1"
    parsed = parse_logfmt(line)
    assert parsed["z"] == "1"
    if value and all(c.isprintable() or c in "\n\r\t" for c in value):
        assert parsed["k"] == value
