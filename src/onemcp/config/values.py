"""Checks of single config values that the model's validators share: finite numbers, URLs that parse.

Boundary: each takes one value and says what is wrong with it (or nothing); where it applies and
how the error reads in context is the model's (`model.py`).
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit


def scalars(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def not_finite(value: Any, text_allowed: bool) -> bool:
    """Is `value` NaN or an infinity, written as a number or (where a number belongs) as text?
    JSON's NaN/Infinity, YAML's .nan/.inf, TOML's nan/inf and the strings "nan"/"inf" all parse."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str) and not text_allowed:
        try:
            return not math.isfinite(float(value))
        except ValueError:
            return False
    return False


_HOST = re.compile(r"^[A-Za-z0-9._~%!$&'()*+,;=-]+$")


def url_problem(url: str) -> str | None:
    """Why an http(s) URL does not parse (None: it does): blanks, no host, a bad host or port."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "does not parse: it contains a space or a control character"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        return f"does not parse: {exc}"
    host = parts.hostname
    if not host:
        return "does not parse: it has no host"
    if not parts.netloc.rpartition("@")[2].startswith("[") and not _HOST.match(host):
        return f"does not parse: {host!r} is not a host name"
    return None
