"""JSON-RPC 2.0 envelopes as plain dicts: parse once, classify, build replies.

The hub never round-trips messages through typed models on the hot path; a message is
the dict orjson gave us, and forwarding means rewriting a few keys and serialising once.
This module owns the envelope rules only, not what any MCP method means.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, Literal, NoReturn, TypeGuard

import orjson

from onemcp.protocol.errors import INTERNAL_ERROR, InvalidParams, InvalidRequest, ParseError, ProtocolError

log = logging.getLogger("onemcp.upstream")
Message = dict[str, Any]
RequestId = int | str
Kind = Literal["request", "notification", "response"]

_LONE = re.compile("[\ud800-\udfff]")  # in text the stdlib parser made: what is left unpaired


def loads(raw: bytes | str) -> Any:
    """JSON text, parsed (orjson.JSONDecodeError if it is not JSON).

    An escaped UTF-16 surrogate that is not half of a pair (`"abc\\ud83d"`) is legal JSON text
    (RFC 8259 §8.2 leaves its meaning to the reader), and JavaScript peers write one whenever they
    cut a string in the middle of an emoji; orjson refuses it, and would refuse to write it again.
    Only then, the stdlib parser reads the message and each such half becomes U+FFFD (what a UTF-8
    decoder makes of it): the message is forwarded, and written, like any other."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "surrogate in string" not in str(exc):  # not "is not valid UTF-8: surrogates not allowed"
            raise
        return _with_lone_surrogates(raw, exc)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _integer(text: str) -> int | float:
    """As orjson reads it: an integer past 64 bits is a float."""
    value = int(text)
    return value if -(2**63) <= value < 2**64 else float(value)


def _number(text: str) -> float:
    """As orjson reads it: a number too large for a double is not JSON."""
    value = float(text)
    if math.isinf(value):
        raise ValueError("number is infinity when parsed as double")
    return value


def _with_lone_surrogates(raw: bytes | str, exc: orjson.JSONDecodeError) -> Any:
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_int=_integer, parse_float=_number)
        return _mended(value)
    except (ValueError, RecursionError):  # not JSON after all (or nested past what either reads)
        raise exc from None


def _mended(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_mended(item) for item in value]
    if isinstance(value, dict):
        return {_mended(key): _mended(item) for key, item in value.items()}
    return value


# Levels of nesting a message may have. orjson reads up to 1023 but writes at most 254, so a
# message between the two would be taken in and then fail wherever the hub writes it (a reply, a
# replayed event, a saved session); the margin covers the few levels the hub wraps around some.
MAX_DEPTH = 200
_WRITABLE = 254  # orjson's own limit when writing
# Objects and arrays in one upstream message. Parsed, each costs 56-64 bytes or more, so 60 MB of
# `[{},{},...]` (under maxResponseBytes) grew the hub by 2 GB; text grows about 5 times. A million
# is far beyond real results (a 100,000-row table of objects is 100,000).
MAX_CONTAINERS = 1_000_000
# ... and in a client's request, which the hub parses on its event loop: 200,000 parse in about
# 40 ms (a 4 MiB body of `[]` holds 1.4 million, 0.4 s in which no other client is served).
MAX_REQUEST_CONTAINERS = 200_000
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # JSON strings: brackets in them are text


class TooDeep(ValueError):
    """A message nests deeper than MAX_DEPTH levels, or holds more than MAX_CONTAINERS objects and arrays."""


def dumps(message: Any) -> bytes:
    return orjson.dumps(message)


# The id of a reply as SDKs write one ({"jsonrpc":"2.0","id":..,"result"|"error"...): anchored at the
# start, so an "id" inside the result cannot be taken for it. Read before parsing an outsize reply.
_REPLY_HEAD = re.compile(
    rb'\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")\s*,\s*"(?:result|error)"'
)
# ... or as JavaScript writes one ({"result"|"error":..,"jsonrpc":"2.0","id":..}): the id is the last
# member, right before the closing brace (one inside the result is followed by more closing brackets)
_REPLY_START = re.compile(rb'\s*\{\s*"(?:result|error)"\s*:')
_REPLY_TAIL = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")\s*\}\s*\Z')


# The id of a request as the Python SDK writes one ({"jsonrpc":"2.0","id":..,"method":..}), or with the
# method first: anchored at the start, only "jsonrpc" and "method" beside it, followed by a comma (a
# number is whole) and with "method" seen (a response, whose id is the hub's own request's, is not
# one): an "id" inside the params is never taken for it. Read from the head of a message too long to
# be read at all, so that its refusal goes to the request its client waits on.
_JSONRPC = rb'(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?'
_ID = rb'(-?\d{1,18}|"[^"\\]{0,200}")'
_REQUEST_HEAD = re.compile(
    rb"\s*\{\s*" + _JSONRPC + rb'(?:"method"\s*:\s*"[^"\\]{0,200}"\s*,\s*' + _JSONRPC + rb'"id"\s*:\s*' + _ID
    + rb'\s*,|"id"\s*:\s*' + _ID + rb"\s*,\s*" + _JSONRPC + rb'"method"\s*:)'
)  # fmt: skip


def request_id(head: bytes) -> RequestId | None:
    """The id a request's first bytes give it (see `_REQUEST_HEAD`), else None."""
    found = _REQUEST_HEAD.match(head[:512])
    return None if found is None else orjson.loads(found.group(1) or found.group(2))


def reply_id(raw: bytes) -> RequestId | None:
    """The id of what is plainly a reply, read without parsing it (it could not be parsed), else None."""
    found = _REPLY_HEAD.match(raw[:256])
    if found is None and _REPLY_START.match(raw[:64]):
        found = _REPLY_TAIL.search(raw[-256:])
    return orjson.loads(found.group(1)) if found is not None else None


def reply_head(head: bytes) -> tuple[bool, RequestId | None]:
    """Is a message whose first bytes are `head` plainly a reply, and its id when they tell it (written
    id first); a reply written result first has its id at its end (`reply_id` of its head and tail)."""
    found = _REPLY_HEAD.match(head[:256])
    if found is not None:
        return True, orjson.loads(found.group(1))
    return _REPLY_START.match(head[:64]) is not None, None


def _brackets(raw: bytes | str) -> int:
    """Opening brackets in `raw` (counted in C): at least its objects and arrays, and its depth."""
    return raw.count(b"{") + raw.count(b"[") if isinstance(raw, bytes) else raw.count("{") + raw.count("[")


def too_deep(raw: bytes | str, value: Any) -> bool:
    """Does `value` (parsed from `raw`) nest deeper than MAX_DEPTH? Nearly free for a message with
    few brackets; else one serialisation with the margin wrapped around it."""
    if _brackets(raw) <= MAX_DEPTH:
        return False
    wrapped = value
    for _ in range(_WRITABLE - MAX_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except TypeError:  # orjson's "Recursion limit reached"
        return True
    return False


def load_bounded(raw: bytes | str, source: str) -> Any:
    """An upstream's message, parsed (orjson.JSONDecodeError if it is not JSON). One that nests
    deeper than MAX_DEPTH comes back as an error reply to its request if it is a reply (so the call
    ends with a reason, not a timeout); anything else raises TooDeep."""
    if _brackets(raw) > MAX_CONTAINERS:  # counted before parsing: the parse is what costs the memory
        what = f"holds more than {MAX_CONTAINERS} objects and arrays"
        found = _REPLY_HEAD.match(raw[:256].encode() if isinstance(raw, str) else raw[:256])
        if found is None:
            raise TooDeep(what)
        rid: Any = orjson.loads(found.group(1))
        return error(rid, {"code": INTERNAL_ERROR, "message": f"{source} sent a reply that {what}; not forwarded"})
    try:
        value = loads(raw)
    except orjson.JSONDecodeError as exc:
        rid = reply_id(raw.encode(errors="replace") if isinstance(raw, str) else raw)
        if rid is None:
            raise
        # the call it answers ends now, with the reason, rather than at its deadline as unanswered
        why = f"{source} sent a reply that is not valid JSON ({exc}); not forwarded"
        log.warning("%s: %.200r", why, raw)
        return error(rid, {"code": INTERNAL_ERROR, "message": why})
    if not too_deep(raw, value):
        return value
    rid = value.get("id") if isinstance(value, dict) and "method" not in value else None
    if isinstance(rid, int | str) and not isinstance(rid, bool):
        why = f"{source} sent a reply that nests deeper than {MAX_DEPTH} levels; it cannot be forwarded"
        return error(rid, {"code": INTERNAL_ERROR, "message": why})
    raise TooDeep(f"nests deeper than {MAX_DEPTH} levels")


def parse(body: bytes) -> Message:
    """Parse one JSON-RPC message; batches are not part of MCP since 2025-06-18. One that holds more
    than MAX_REQUEST_CONTAINERS objects and arrays is refused before it is parsed."""
    if _brackets(body) > MAX_REQUEST_CONTAINERS and _brackets(_STRINGS.sub(b"", body)) > MAX_REQUEST_CONTAINERS:
        raise InvalidRequest(
            f"Invalid Request: the message holds more than {MAX_REQUEST_CONTAINERS} objects and arrays"
        )
    deep = f"Invalid params: the message nests deeper than {MAX_DEPTH} levels"
    try:
        msg = loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) and _brackets(body) > MAX_DEPTH:  # past the parser's own limit: as deep, no id
            raise InvalidParams(deep) from None
        raise ParseError(f"Parse error: {exc}") from None
    if not isinstance(msg, dict):
        raise InvalidRequest("Invalid Request: expected a single JSON-RPC object")
    try:
        classify(msg)
    except InvalidRequest as exc:
        # Plainly a request (it has a method) whose id reads: its error goes under that id, or the
        # client that waits for it waits until its own timeout. No method, no id: it may be a reply
        # that lost its result, and that id is one of ours (a client's request of that id would hear it).
        rid = msg.get("id")
        if "method" in msg and isinstance(rid, int | str) and not isinstance(rid, bool):
            exc.rid = rid
        raise
    if too_deep(body, msg):
        refused = InvalidParams(deep)
        if "method" in msg:  # a request's id was read: its error says whose it is
            refused.rid = msg.get("id")
        raise refused
    return msg


def refusal(exc: ProtocolError) -> Message:
    """The error reply to a message `parse` refused: its id when one was read, else null."""
    return error(exc.rid, exc.to_error())


def is_request_id(value: object) -> TypeGuard[RequestId]:
    """Could `value` be a request's id (a `requestId` a cancellation names)? JSON `true` is not request 1."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def classify(msg: Message) -> Kind:
    """Say what a message is, or raise InvalidRequest if it is none of the three."""
    if msg.get("jsonrpc") != "2.0":
        raise InvalidRequest('Invalid Request: "jsonrpc" must be "2.0"')
    method = msg.get("method")
    has_id = "id" in msg
    if method is not None:
        if not isinstance(method, str):
            raise InvalidRequest('Invalid Request: "method" must be a string')
        params = msg.get("params")
        if params is not None and not isinstance(params, dict):
            raise InvalidRequest('Invalid Request: "params" must be an object')
        if not has_id:
            return "notification"
        rid = msg["id"]
        if isinstance(rid, float):  # orjson reads 1e3, 1.0 and integers past 64 bits as floats
            raise InvalidRequest(
                'Invalid Request: a number "id" must be an integer of at most 64 bits, written without'
                " a fraction or an exponent (or send a string)"
            )
        if isinstance(rid, bool) or not isinstance(rid, int | str):
            raise InvalidRequest('Invalid Request: "id" must be a string or an integer')
        return "request"
    if has_id and ("result" in msg or "error" in msg):
        rid = msg["id"]
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, int | str)):
            raise InvalidRequest('Invalid Request: a response "id" must be a string, an integer or null')
        return "response"
    raise InvalidRequest("Invalid Request: neither a request, a notification nor a response")


def malformed_response(msg: Message) -> str | None:
    """What makes a response unreadable to whoever asked, or None: exactly one of `result` (an
    object, as every MCP result is) and `error` (an integer `code` and a string `message`)."""
    if ("result" in msg) == ("error" in msg):
        return "both a result and an error" if "result" in msg else "neither a result nor an error"
    if "result" in msg:
        return None if isinstance(msg["result"], dict) else "a result that is not an object"
    error = msg["error"]
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and not isinstance(code, bool) and isinstance(error.get("message"), str):
        return None
    return "an error that is not an error object (an integer code, a string message)"


def result(rid: RequestId | None, value: Any) -> Message:
    return {"jsonrpc": "2.0", "id": rid, "result": value}


def error(rid: RequestId | None, err: dict[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "id": rid, "error": err}


def notification(method: str, params: dict[str, Any] | None = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def splice_result(rid: RequestId | None, result_json: bytes) -> bytes:
    """Serialise a response around an already-serialised result (cached list pages)."""
    return b'{"jsonrpc":"2.0","id":' + orjson.dumps(rid) + b',"result":' + result_json + b"}"
