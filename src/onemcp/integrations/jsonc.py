"""JSON with comments (VS Code's settings.json and mcp.json): reduce it to plain JSON.

Owns comment and trailing-comma removal only, string-aware so ``"http://x"`` keeps its ``//``.
Writing JSONC back is not supported: a caller that must rewrite such a file checks
`is_plain_json` first and refuses rather than silently dropping the user's comments.
"""

from __future__ import annotations


def strip_jsonc(text: str) -> str:
    """`text` without ``//`` and ``/* */`` comments and without commas before ``}`` or ``]``."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = n if close < 0 else close + 2
            out.append(" ")
        elif ch == ",":
            j = i + 1
            while j < n and (text[j].isspace() or text.startswith(("//", "/*"), j)):
                j = _skip_space_and_comments(text, j)
            if j >= n or text[j] not in "}]":
                out.append(ch)
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def is_plain_json(text: str) -> bool:
    """True when `text` has no comments or trailing commas, so rewriting it loses nothing."""
    return strip_jsonc(text) == text


def _string_end(text: str, start: int) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return len(text)


def _skip_space_and_comments(text: str, i: int) -> int:
    if text.startswith("//", i):
        newline = text.find("\n", i)
        return len(text) if newline < 0 else newline
    if text.startswith("/*", i):
        close = text.find("*/", i + 2)
        return len(text) if close < 0 else close + 2
    return i + 1
