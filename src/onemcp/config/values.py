"""Checks of single config values that the model's validators share: finite numbers, URLs that parse,
headers and variables that can be sent, origins and Host names a request can match.

Boundary: each takes one value and says what is wrong with it (or nothing); where it applies and
how the error reads in context is the model's (`model.py`).
"""

from __future__ import annotations

import math
import re
import string
from typing import Any
from urllib.parse import urlsplit

from onemcp.protocol.headers import sendable


class FromEnv(str):
    """A config string that a ${VAR} (or its default) filled in: the one kind of string taken where a
    number or a boolean belongs (substitution leaves every value a string); a number written in quotes
    by hand ("20000") is refused there, as nothing is accepted silently."""

    __slots__ = ()


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


INSTRUCTION_FIELDS = ("count", "naming", "summary", "servers")


def template_problem(text: str) -> str | None:
    """Why an instructions template names a field the hub does not fill (None: it names none).
    Text with a stray brace is not a template and is used as written, so it has no problem."""
    try:
        named = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError:
        return None
    if any(name == "" or name.isdigit() for name in named):
        return None  # `{}`, `{0}`: not a template either, used as written (as `render_instructions` does)
    unknown = [name for name in named if name not in INSTRUCTION_FIELDS]
    if not unknown:
        return None
    fields = ", ".join(f"{{{name}}}" for name in INSTRUCTION_FIELDS)
    return f"{{{unknown[0]}}} is not a field of the template: it has {fields} (write {{{{ and }}}} for a brace)"


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)


def header_problem(name: str, value: str, rendered_later: bool = False) -> str | None:
    """Why a `headers` entry cannot be sent (None: it can); never shows the value, often a secret."""
    if not _TOKEN.match(name):
        return f"{name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
    if not rendered_later and not sendable(value):
        return f"{name}: its value must be printable ASCII (no line break or control character)"
    return None


def env_problem(name: str, value: str, rendered_later: bool = False) -> str | None:
    """Why an `env` entry cannot be given to a process (None: it can); never shows the value."""
    if not name or "=" in name or "\0" in name:
        return f"{name!r} is not a variable name (not empty, no '=' or NUL)"
    if not rendered_later and "\0" in value:
        return f"{name}: its value cannot hold a NUL character"
    return None


def origin_of(url: str) -> str | None:
    """The Origin a browser sends for a page at `url`: `scheme://host[:port]`, lowercased, without
    userinfo or the scheme's default port, the host in its ASCII (punycode) form."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
        if parts.scheme not in ("http", "https") or not host:
            return None
        if ":" in host:
            host = f"[{host}]"  # IPv6, as browsers write it
        elif not host.isascii():
            host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def origin_problem(entry: str) -> str | None:
    """Why an `allowedOrigins` entry can match no browser's Origin header (None: it can, or it is "*")."""
    if entry == "*":
        return None
    sent = origin_of(entry)
    if sent is None or any(c.isspace() for c in entry):
        return f'{entry!r} is not an origin: write scheme://host[:port] (https://app.example), or "*"'
    if sent != entry.rstrip("/").lower():
        return f"{entry!r} is not what a browser sends as its Origin: write {sent!r}"
    return None


def host_problem(entry: str) -> str | None:
    """Why an `allowedHosts` entry can match no Host header (None: it can): a name, optionally with :port."""
    if entry == "*":
        return "'*' is not taken: list each name clients reach the hub by (the Host header, e.g. mcp.example)"
    if not entry or any(c.isspace() or c in "/@?#" for c in entry) or "://" in entry:
        return f"{entry!r} is not a Host header: write a name, optionally with :port (mcp.example, mcp.example:8443)"
    return None
