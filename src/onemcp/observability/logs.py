"""Logging set-up: text or JSON lines, and secrets redacted from every record.

Secrets are the values the config hands to upstreams (env values, header values) plus
anything shaped like a bearer token or an API key parameter; they are replaced by `***`
in the message and its arguments before any handler formats the record.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from onemcp.config.model import HubConfig

TOKEN = re.compile(
    # `token=`/`api_key:` as a parameter, not the tail of a variable's name ("env.GITHUB_TOKEN: environment
    # variable ... is not set" names what is missing; the values themselves are masked by `secrets`)
    r"(?i)(authorization:\s*(?:bearer\s+|basic\s+)?|bearer\s+|(?<![A-Za-z0-9_])token[=:]\s*"
    r"|(?<![A-Za-z0-9_])api[_-]?key[=:]\s*)([^\s,;\"']+)"
)
MIN_SECRET = 6  # shorter values (ports, flags) would mask too much


class Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def use(self, config: HubConfig) -> None:
        values = {
            value
            for server in config.servers.values()
            for value in [*server.env.values(), *server.headers.values()]
            if len(value) >= MIN_SECRET
        }
        self.secrets = sorted(values, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return TOKEN.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.scrub(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            doc["exception"] = record.exc_text
        return orjson.dumps(doc).decode()


REDACTOR = Redactor()


LOG_FILE_BYTES = 10 * 1024 * 1024  # a log file is rotated at this size, 3 old ones kept
LOG_FILE_BACKUPS = 3


def configure(level: str, fmt: str, file: Path | None = None) -> None:
    """Log lines to stderr, or to `file` (rotated at 10 MiB, 3 kept: `onemcp start` runs the hub so)."""
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
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
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.addFilter(REDACTOR)
    handler.setFormatter(JsonFormatter())
    audit.addHandler(handler)
    audit.propagate = False
