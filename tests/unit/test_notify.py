"""sd_notify written out by hand, and log lines shaped for systemd's journal."""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from reputable.config import LogConfig
from reputable.log import Field, configure_logging, emit, logger, stderr_is_journal
from reputable.notify import READY, RELOADING, monotonic_usec, notify, status


def test_assignments_arrive_in_one_datagram_on_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        assert notify(READY, status("two\nlines"), environ={"NOTIFY_SOCKET": str(path)})
        assert systemd.recv(4096) == b"READY=1\nSTATUS=two lines"


def test_an_abstract_address_is_written_with_an_at_sign() -> None:
    name = f"reputable-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        assert notify(RELOADING, environ={"NOTIFY_SOCKET": "@" + name})
        assert systemd.recv(4096) == b"RELOADING=1"


@pytest.mark.parametrize("address", ["", "vsock:2:1234", "relative/path"])
def test_without_a_usable_notify_socket_nothing_is_sent(address: str) -> None:
    assert notify(READY, environ={"NOTIFY_SOCKET": address}) is False


def test_a_notify_socket_nobody_reads_is_not_an_error(tmp_path: Path) -> None:
    assert notify(READY, environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_monotonic_usec_is_the_monotonic_clock_in_microseconds() -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    name, _, value = monotonic_usec().partition("=")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert name == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path: Path) -> None:
    info = os.fstat(sys.stderr.fileno())
    assert stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
    assert not stderr_is_journal({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"})
    assert not stderr_is_journal({})


def test_journal_lines_carry_their_priority_and_no_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    stream.fileno = sys.__stderr__.fileno  # type: ignore[method-assign,union-attr]
    info = os.fstat(sys.__stderr__.fileno())  # type: ignore[union-attr]
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(LogConfig())
    try:
        log = logger("milter")
        emit(log, logging.INFO, {Field.EVENT: "start"})
        emit(log, logging.WARNING, {Field.EVENT: "key_missing"})
        emit(log, logging.ERROR, {Field.EVENT: "reload_failed"})
    finally:
        configure_logging(LogConfig(target="stderr"))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "<6>level=info logger=milter event=start",
        "<4>level=warning logger=milter event=key_missing",
        "<3>level=error logger=milter event=reload_failed",
    ]
