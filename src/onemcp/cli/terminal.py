"""What the command line prints of an upstream's text, safe on a terminal.

Tool names, descriptions, schemas, results and errors come from upstream servers, which may send
terminal codes (ESC, CSI, OSC), C1 controls or bidi overrides. Every such text the agent CLI prints
goes through `escape_line` (one line, cut), `escape_text` (lines kept) or `json_text` (exact JSON);
`table` lays escaped cells out. `keep_stdout_writable` makes a stdout that is not UTF-8 (a Windows
pipe, a C locale) write what it cannot encode as `\\u` escapes instead of failing. `escaped_output`
is the net under every other command's printing (`mcp list`, `preset list`, `auth key list`,
`validate`, `logs`: names, tags, commands and descriptions from a config, the admin API or an
imported app's file): what it writes has those characters as JSON's `\\u` escapes. Does not decide
what is printed (`agent.py`).

The escaping itself is `onemcp.observability.redact`'s, imported only for a text that needs it: it
brings pydantic (300 ms), and `onemcp run` is started once per call. Python's `isprintable` is
false for every character those functions escape (controls, format characters, line and paragraph
separators: tests/cli/test_agent_cli.py holds the two together), so a text it passes has nothing
to escape.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

ESCAPE_ERRORS = "onemcp.jsonescape"  # the codec error handler `keep_stdout_writable` sets
LINE_LIMIT = 300  # characters of an upstream's text in one line of a listing (`inspect SERVER/TOOL` shows it all)


def escape_line(value: Any, limit: int = LINE_LIMIT) -> str:
    """Upstream text as one line of a terminal: control and format characters escaped (`\\x1b`,
    `\\n`, `\\u202e`), and cut after `limit` characters with a marker."""
    text = str(value)
    if len(text) > limit:
        text = f"{text[:limit]}… [{len(text) - limit} more characters]"
    if text.isprintable():
        return text
    from onemcp.observability.redact import one_line

    return one_line(text)


def escape_text(value: Any) -> str:
    """Upstream text for a terminal, its lines kept: control and format characters escaped."""
    text = str(value)
    if text.replace("\n", "").replace("\t", "").isprintable():
        return text
    from onemcp.observability.redact import printable

    return printable(text)


def json_text(doc: Any) -> str:
    """`doc` as indented JSON, exact, and safe on a terminal: JSON escapes C0 controls but not C1
    controls or bidi overrides, so a document holding one is written with `\\u` escapes throughout."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    return text if text.replace("\n", "").isprintable() else json.dumps(doc, indent=2)


def table(header: list[str], rows: list[list[str]]) -> None:
    """Print `rows` (escaped already) in columns, under `header` if any."""
    lines = [header, *rows] if header else rows
    if not lines:
        return
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    for row in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def keep_stdout_writable() -> None:
    """Characters stdout's encoding cannot write (a cp1252 pipe, an ASCII locale), and lone surrogates
    even in UTF-8, become JSON's own escapes (`\\u2713`, astral ones as a surrogate pair) instead of a
    UnicodeEncodeError after the tool ran. Inside JSON output they are exact JSON (they occur only in
    strings), in text they read as the control characters `escape_text` escapes do. Its encoding is
    kept: the reader chose it (PYTHONIOENCODING, the locale)."""
    codecs.register_error(ESCAPE_ERRORS, _json_escape)  # the same handler again, when called again
    if isinstance(sys.stdout, io.TextIOWrapper):
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.reconfigure(errors=ESCAPE_ERRORS)


def _json_escape(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return _json_escapes(exc.object[exc.start : exc.end]), exc.end


def _json_escapes(chars: str) -> str:
    out: list[str] = []
    for char in chars:
        code = ord(char)
        if code > 0xFFFF:  # JSON writes an astral character as its UTF-16 surrogate pair
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def escape_output(text: str) -> str:
    """`text` with its control and format characters (new lines and tabs kept) as JSON's `\\u` escapes:
    safe on a terminal, and inside a JSON document written raw (C1 controls, bidi marks) still the same
    JSON. A text already escaped, or holding none, is returned as it is."""
    if text.replace("\n", "").replace("\t", "").isprintable():
        return text
    from onemcp.observability.redact import CONTROL_BUT_NEWLINE

    return CONTROL_BUT_NEWLINE.sub(lambda match: _json_escapes(match.group(0)), text)


class _Escaping:
    """A text stream that writes through `escape_output`; everything else is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(escape_output(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def escaped_output() -> Iterator[None]:
    """While it is open, stdout and stderr write terminal codes, C1 controls and bidi or invisible
    characters escaped: a command's printing cannot clear the screen, retitle the window, hide text
    or reorder it, whatever a config, a preset or a key name holds."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Escaping(saved[0]), _Escaping(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
