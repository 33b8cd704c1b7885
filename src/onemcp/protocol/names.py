"""Namespacing: how upstream names and URIs become client-visible ones, reversibly.

Tools and prompts become ``<server><sep><name>``; resource URIs and URI templates become
``<server>+<uri>`` (a valid URI: ``+`` is allowed in a scheme, so ``time+file:///x`` is a URI
with scheme ``time+file``). Decoding never guesses: server names are validated so that the
first separator in an encoded name always ends the server name, and the catalog keeps the
exact reverse map for names that had to be sanitised or shortened.

This module is pure: it knows nothing about which servers exist.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

TOOL_NAME_MAX = 64
_TOOL_NAME_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")
URI_SEPARATOR = "+"
# a web address is shown as it is: the spec has clients fetch http(s) resources themselves, and a prefix
# would make the address unfetchable (the catalog routes a read of one by the lists and templates)
_WEB = re.compile(r"^https?://", re.IGNORECASE)
DEFAULT_SEPARATOR = "__"
INSTANCE_MARK = "@"  # in `<template>@<hash>`, a template instance's name; no server or template name may contain it


def shown_as(server: str) -> str:
    """The name clients know a server by: its own, or a template instance's template's (the instance's
    id is the hub's, for /health and logs)."""
    return server.partition(INSTANCE_MARK)[0]


class PrefixMode(StrEnum):
    """When names get the server prefix."""

    ALWAYS = "always"
    CONDITIONAL = "conditional"  # only when more than one upstream is enabled
    NEVER = "never"  # names as the upstream gives them; collisions are reported


def server_name_problem(name: str, separator: str) -> str | None:
    """Why `name` cannot be a server name under `separator`, or None when it can.

    With the name restricted to [A-Za-z0-9_-], not containing the separator, and neither
    starting nor ending with a separator character, the first occurrence of the separator
    in ``name + sep + tool`` is exactly at ``len(name)``: decoding is unambiguous.
    """
    if not name:
        return "must not be empty"
    if _BAD_CHARS.search(name):
        return "may contain only letters, digits, '_' and '-'"
    if separator in name:
        return f"must not contain the name separator {separator!r}"
    if name[0] in separator or name[-1] in separator:
        return f"must not start or end with a character of the separator {separator!r}"
    if len(name) > 32:
        return "must be at most 32 characters (it prefixes tool names limited to 64)"
    return None


def separator_problem(separator: str) -> str | None:
    if not separator or _BAD_CHARS.search(separator):
        return "separator must be non-empty and use only letters, digits, '_' and '-'"
    return None


class NameCodec:
    """Encodes (server, name) pairs into client-visible names and URIs."""

    def __init__(self, separator: str = DEFAULT_SEPARATOR) -> None:
        self.separator = separator

    def name(self, server: str, name: str, *, prefixed: bool) -> str:
        """Client-visible tool or prompt name: prefixed, sanitised, at most 64 chars."""
        full = f"{server}{self.separator}{name}" if prefixed else name
        if _TOOL_NAME_OK.match(full):
            return full
        clean = _BAD_CHARS.sub("_", full) or "_"
        if len(clean) <= TOOL_NAME_MAX and clean != full:
            return clean
        return self.hashed(server, name, prefixed=prefixed)  # too long

    def hashed(self, server: str, name: str, *, prefixed: bool) -> str:
        """The name as a readable head and a digest of the whole original: for one too long, or one
        whose sanitised form another name of the list already is (`a.b` beside `a_b`)."""
        full = f"{server}{self.separator}{name}" if prefixed else name
        clean = _BAD_CHARS.sub("_", full) or "_"
        digest = hashlib.sha256(full.encode()).hexdigest()[:8]
        return f"{clean[: TOOL_NAME_MAX - 9]}_{digest}"

    def plain(self, server: str, name: str, *, prefixed: bool) -> bool:
        """Is the name shown as it is (prefixed), nothing sanitised or shortened?"""
        return _TOOL_NAME_OK.match(f"{server}{self.separator}{name}" if prefixed else name) is not None

    def split_name(self, visible: str) -> tuple[str, str] | None:
        """Server and upstream name of a prefixed, unsanitised name (no map needed)."""
        server, sep, rest = visible.partition(self.separator)
        if not sep or not rest:
            return None
        return server, rest

    @staticmethod
    def uri(server: str, uri: str, *, prefixed: bool) -> str:
        return f"{server}{URI_SEPARATOR}{uri}" if prefixed and not is_web(uri) else uri

    @staticmethod
    def split_uri(visible: str) -> tuple[str, str] | None:
        server, sep, rest = visible.partition(URI_SEPARATOR)
        if not sep or not rest or ":" in server or "/" in server:
            return None
        return server, rest


def is_web(uri: str) -> bool:
    """An http(s) URI: a web address, shown to clients as it is (never prefixed)."""
    return _WEB.match(uri) is not None
