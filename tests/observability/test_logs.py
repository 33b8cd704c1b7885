"""Logs: secrets from the config and token-shaped strings never reach a handler; JSON lines."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import os
from pathlib import Path

from onemcp.config.model import HubConfig
from onemcp.observability.logs import JsonFormatter, configure, configure_audit
from onemcp.observability.redact import REDACTOR, Redactor


def capture(redactor: Redactor, formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(redactor)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-logs-{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


def test_config_secrets_and_tokens_are_redacted() -> None:
    config = HubConfig.model_validate(
        {
            "mcpServers": {
                "gh": {"command": "x", "env": {"GITHUB_TOKEN": "ghp_supersecret123", "DEBUG": "1"}},
                "api": {"url": "https://api.example/mcp", "headers": {"X-Api-Key": "k-0123456789"}},
            }
        }
    )
    redactor = Redactor()
    redactor.use(config)
    logger, out = capture(redactor, logging.Formatter("%(message)s"))
    logger.info("spawned with %s", {"GITHUB_TOKEN": "ghp_supersecret123"})
    logger.warning("upstream said: Authorization: Bearer abc.def.ghi and key k-0123456789")
    try:
        raise RuntimeError("failed with token=ghp_supersecret123")
    except RuntimeError:
        logger.exception("boom")
    text = out.getvalue()
    assert "ghp_supersecret123" not in text and "k-0123456789" not in text and "abc.def.ghi" not in text
    assert text.count("***") >= 4
    assert "DEBUG" not in text or "1" in text  # short values are not treated as secrets


def test_json_lines() -> None:
    logger, out = capture(Redactor(), JsonFormatter())
    logger.info("hello %s", "world")
    doc = json.loads(out.getvalue().strip())
    assert doc["message"] == "hello world" and doc["level"] == "info" and doc["time"].endswith("Z")


def test_a_json_lines_exception_is_the_traceback_as_python_wrote_it() -> None:
    """The text log indents an exception's lines (none may pass for a record of its own); a JSON string
    cannot, so its `exception` field is not indented (its control characters stay escaped)."""
    logger, out = capture(REDACTOR, JsonFormatter())
    try:
        raise ValueError("x\n2026-01-01 INFO forged\x1b[2J")
    except ValueError:
        logger.exception("boom")
    lines = json.loads(out.getvalue().strip())["exception"].split("\n")
    assert lines[0] == "Traceback (most recent call last):" and lines[1].startswith('  File "'), lines
    assert lines[-1] == "2026-01-01 INFO forged\\x1b[2J" and lines[-2] == "ValueError: x", lines


def test_a_missing_token_variable_is_named_not_masked() -> None:
    """`onemcp` reports which *_TOKEN variable is unset; masking must not eat the message."""
    message = "mcpServers.gh.env.GITHUB_TOKEN: environment variable ${GITHUB_TOKEN} is not set"
    assert REDACTOR.scrub(message) == message
    assert REDACTOR.scrub("retrying with token=abcdef123") == "retrying with token=***"


def test_log_and_audit_files_are_made_owner_only(tmp_path: Path) -> None:
    """Under umask 022 a log file (and each one a rotation starts) and the audit file were 0644: every
    local user could read upstreams' stderr, the hub's errors and who called what."""
    root, audit = logging.getLogger(), logging.getLogger("onemcp.audit")
    saved = root.handlers[:], root.level, audit.handlers[:], audit.level, audit.propagate
    old_umask = os.umask(0o022)
    try:
        configure("info", "text", tmp_path / "logs" / "hub.log")
        configure_audit(str(tmp_path / "audit.jsonl"))
        logging.getLogger("onemcp.test").info("a line")
        audit.info("call principal=anonymous server=s tool=t outcome=ok")
        rotating = root.handlers[0]
        assert isinstance(rotating, logging.handlers.RotatingFileHandler)
        rotating.doRollover()
        files = [tmp_path / "logs" / "hub.log", tmp_path / "logs" / "hub.log.1", tmp_path / "audit.jsonl"]
        assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o600" for f in files}
        assert "a line" in files[1].read_text() and "principal=anonymous" in files[2].read_text()
    finally:
        os.umask(old_umask)
        for handler in [*root.handlers, *audit.handlers]:
            handler.close()
        root.handlers[:], audit.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        audit.setLevel(saved[3])
        audit.propagate = saved[4]
