"""What every unit test shares: the `reputable` logger as it was before the test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _logger_put_back() -> Iterator[None]:
    """Undo what a test's `configure_logging` did to the process-wide `reputable` logger.

    Left configured, it stops propagating, and every later test that reads log
    records through caplog sees none (pytest 7, as on Debian 12, runs the
    milter tests after the modules in tests/unit, so they come later).
    """
    root = logging.getLogger("reputable")
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers = handlers
    root.setLevel(level)
    root.propagate = propagate
