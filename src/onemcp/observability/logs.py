"""Logging set-up: text or JSON lines, and secrets redacted from every record.

Each handler filters through `redact.REDACTOR`: the values the config hands to upstreams and
anything shaped like a credential become `***`, and control characters are escaped, in the
message and its arguments before the record is formatted (`redact.py` says what counts). A log
or audit file is made readable by its owner only (`LOG_FILE_MODE`), as each file rotation starts:
an upstream's stderr, who called what and the hub's errors are the operator's, not every local user's.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from onemcp.observability.redact import REDACTOR


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:  # (indented by the redactor for text logs: a JSON string cannot pass for a record)
            doc["exception"] = "\n".join(line.removeprefix("  ") for line in record.exc_text.split("\n"))
        return orjson.dumps(doc).decode()


LOG_FILE_BYTES = 10 * 1024 * 1024  # a log file is rotated at this size, 3 old ones kept
LOG_FILE_BACKUPS = 3
LOG_FILE_MODE = 0o600  # a new log or audit file (an existing one keeps the mode it has)


def open_private(path: str | Path, encoding: str | None = "utf-8", errors: str | None = None) -> io.TextIOWrapper:
    """`path` opened to append text, made with LOG_FILE_MODE if it is new."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, LOG_FILE_MODE)
    return open(fd, "a", encoding=encoding, errors=errors)


class _PrivateRotating(logging.handlers.RotatingFileHandler):
    def _open(self) -> io.TextIOWrapper:
        return open_private(self.baseFilename, self.encoding, self.errors)


class _PrivateFile(logging.FileHandler):
    def _open(self) -> io.TextIOWrapper:
        return open_private(self.baseFilename, self.encoding, self.errors)


def configure(level: str, fmt: str, file: Path | None = None) -> None:
    """Log lines to stderr, or to `file` (rotated at 10 MiB, 3 kept: `onemcp start` runs the hub so)."""
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = _PrivateRotating(file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(REDACTOR)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))


def configure_audit(target: str | None) -> None:
    """Audit lines (auth decisions, tool calls) as JSON: to a file, to the log ("-"), or off."""
    audit = logging.getLogger("onemcp.audit")
    for handler in list(audit.handlers):
        audit.removeHandler(handler)
        handler.close()
    if target is None:
        audit.setLevel(logging.WARNING)
        audit.propagate = False
        return
    audit.setLevel(logging.INFO)
    if target == "-":
        audit.propagate = True
        return
    handler = _PrivateFile(target, encoding="utf-8")
    handler.addFilter(REDACTOR)
    handler.setFormatter(JsonFormatter())
    audit.addHandler(handler)
    audit.propagate = False
