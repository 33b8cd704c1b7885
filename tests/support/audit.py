"""The audit logger's lines, collected while a block runs (whatever an earlier test configured for it)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class LineCollector(logging.Handler):
    """Keeps each record's message in `lines`."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def audit_lines() -> Iterator[list[str]]:
    """The audit logger's lines while inside (whatever an earlier test configured for it)."""
    logger = logging.getLogger("onemcp.audit")
    lines: list[str] = []
    handler = LineCollector(lines)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
