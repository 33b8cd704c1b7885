"""Hostile input to the JSON-RPC parser: whatever the bytes, `parse` classifies or raises a ProtocolError.

What orjson does at the edges (orjson 3.13, checked here so an upgrade that changes it shows up):
nesting up to 1024 levels parses and deeper is a JSONDecodeError ("depth limit exceeded"), never a
RecursionError; integers beyond 64 bits (> 2**64 - 1, < -2**63) come back as floats; 1e400 and NaN
are parse errors; lone surrogates (escaped or raw UTF-8) and a byte-order mark are parse errors.
`orjson.dumps` only nests 254 levels, so a message can parse yet not serialise back: see
`test_what_parse_accepts_can_be_echoed`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import HubError, InvalidParams, InvalidRequest, ParseError

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = {"request", "notification", "response"}
ORJSON_MAX_DEPTH = 1024  # what orjson.loads accepts
DUMPS_MAX_DEPTH = 254  # what orjson.dumps accepts

# ------------------------------------------------------------------------------------------ strategies
# Any code point, surrogates included (stdlib json escapes them as \udXXX or, with
# ensure_ascii=False and "surrogatepass", writes them as invalid UTF-8).
any_char = st.characters(codec=None, exclude_categories=())
texts = st.text(any_char, max_size=24)
huge_ints = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2),
    st.integers(min_value=2**64, max_value=2**400),
    st.integers(max_value=-(2**64)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)
METHODS = ["ping", "initialize", "tools/list", "tools/call", "notifications/initialized", "notifications/cancelled"]
ABSENT = object()


def encode(value: Any, ascii_only: bool) -> bytes:
    """Serialise with the stdlib (big ints, NaN and surrogates allowed, unlike orjson)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """JSON-RPC-looking objects with every field absent, right, or of a wrong type."""
    fields: dict[str, Any] = {
        "jsonrpc": st.sampled_from(["2.0", "2", "1.0", 2.0, 2, None, ABSENT]) | json_values,
        "id": st.integers() | texts | huge_ints | st.sampled_from([ABSENT, None, True, 1.5]) | json_values,
        "method": st.sampled_from([*METHODS, ABSENT, None, 5, ""]) | texts | json_values,
        "params": st.sampled_from([ABSENT, None, {}, [], "p"]) | st.dictionaries(texts, json_values, max_size=3),
        "result": st.just(ABSENT) | json_values,
        "error": st.just(ABSENT) | json_values,
    }
    msg = {key: draw(strategy) for key, strategy in fields.items()}
    extra = draw(st.dictionaries(texts, json_values, max_size=2))
    return {**extra, **{k: v for k, v in msg.items() if v is not ABSENT}}


def nest(depth: int, kinds: str, inner: bytes) -> bytes:
    """`inner` wrapped in `depth` containers, built as text (json.dumps itself would recurse)."""
    opening = {"l": b"[", "d": b'{"k":'}
    closing = {"l": b"]", "d": b"}"}
    order = [kinds[i % len(kinds)] for i in range(depth)]
    return b"".join(opening[k] for k in order) + inner + b"".join(closing[k] for k in reversed(order))


# ----------------------------------------------------------------------------------------- assertions
def check(body: bytes) -> jsonrpc.Message | None:
    """The parser's contract: a classified dict, or ParseError / InvalidRequest, nothing else."""
    try:
        msg = jsonrpc.parse(body)
    except (ParseError, InvalidRequest) as exc:
        assert isinstance(exc, HubError)
        err = exc.to_error()
        assert err["code"] in (-32700, -32600) and isinstance(err["message"], str)
        orjson.dumps(jsonrpc.error(None, err))  # the error reply itself always serialises
        return None
    assert isinstance(msg, dict)
    assert jsonrpc.classify(msg) in KINDS
    if jsonrpc.classify(msg) == "request":
        rid = msg["id"]
        assert type(rid) in (int, str)  # never a bool, a float (huge ints arrive as floats), or null
        assert isinstance(msg["method"], str)
        orjson.dumps(rid)  # a request id can always be echoed back
    return msg


# ------------------------------------------------------------------------------------------- properties
@SETTINGS
@given(body=st.binary(max_size=256))
@example(body=b"")
@example(body=b"\xef\xbb\xbf{}")
@example(body=b'{"jsonrpc":"2.0","id":1,"method":"ping"}\x00')
def test_arbitrary_bytes(body: bytes) -> None:
    check(body)


@SETTINGS
@given(value=json_values, ascii_only=st.booleans())
def test_arbitrary_json_values(value: Any, ascii_only: bool) -> None:
    msg = check(encode(value, ascii_only))
    if not isinstance(value, dict):
        assert msg is None  # only an object can be a message (no batches)


@SETTINGS
@given(msg=envelopes(), ascii_only=st.booleans())
@example(msg={"jsonrpc": "2.0", "id": 2**64, "method": "ping"}, ascii_only=True)
@example(msg={"jsonrpc": "2.0", "id": -(2**63) - 1, "method": "ping"}, ascii_only=True)
@example(msg={"jsonrpc": "2.0", "id": "\ud800", "method": "ping"}, ascii_only=True)
@example(msg={"jsonrpc": "2.0", "id": 1, "method": "\udfff"}, ascii_only=False)
@example(msg={"jsonrpc": "2.0", "id": float("nan"), "method": "ping"}, ascii_only=True)
def test_envelopes_with_wrong_types(msg: dict[str, Any], ascii_only: bool) -> None:
    parsed = check(encode(msg, ascii_only))
    if parsed is not None:
        assert parsed.get("jsonrpc") == "2.0"


@SETTINGS
@given(
    depth=st.integers(min_value=0, max_value=2000),
    kinds=st.sampled_from(["l", "d", "ld", "dl"]),
    where=st.sampled_from(["body", "id", "method", "params", "result"]),
)
@example(depth=ORJSON_MAX_DEPTH, kinds="l", where="body")
@example(depth=ORJSON_MAX_DEPTH + 1, kinds="l", where="body")
@example(depth=ORJSON_MAX_DEPTH - 1, kinds="l", where="id")
@example(depth=ORJSON_MAX_DEPTH, kinds="d", where="id")
@example(depth=ORJSON_MAX_DEPTH - 2, kinds="dl", where="params")
@example(depth=ORJSON_MAX_DEPTH - 1, kinds="ld", where="params")
@example(depth=2000, kinds="d", where="params")
@example(depth=jsonrpc.MAX_DEPTH - 2, kinds="d", where="params")
@example(depth=jsonrpc.MAX_DEPTH - 1, kinds="d", where="params")
@example(depth=jsonrpc.MAX_DEPTH, kinds="ld", where="result")
def test_deep_nesting_is_a_parse_error_not_a_recursion_error(depth: int, kinds: str, where: str) -> None:
    leaf = nest(depth, kinds, b"1")
    body = {
        "body": leaf,
        "id": b'{"jsonrpc":"2.0","method":"m","id":' + leaf + b"}",
        "method": b'{"jsonrpc":"2.0","id":1,"method":' + leaf + b"}",
        "params": b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"p":' + leaf + b"}}",
        "result": b'{"jsonrpc":"2.0","id":1,"result":' + leaf + b"}",
    }[where]
    outer = 0 if where == "body" else 1 + (where == "params")  # containers around the nested value
    total = depth + outer
    try:
        msg = jsonrpc.parse(body)
    except ParseError as exc:
        raise AssertionError(f"valid JSON, only deep: one answer whatever the depth, not {exc}") from None
    except InvalidRequest:
        assert total <= ORJSON_MAX_DEPTH
        return
    except InvalidParams as exc:  # too deep for the hub to write on (orjson writes 254 levels), or to read
        assert total > jsonrpc.MAX_DEPTH, exc
        read = total <= ORJSON_MAX_DEPTH and where in ("method", "params")  # a request whose id was read
        assert exc.rid == (1 if read else None), (exc.rid, where)
        return
    assert total <= jsonrpc.MAX_DEPTH
    assert jsonrpc.classify(msg) in KINDS


@SETTINGS
@given(n=st.integers(min_value=0, max_value=2**70) | st.integers(max_value=0, min_value=-(2**70)))
def test_integer_ids_round_trip_or_are_rejected(n: int) -> None:
    body = b'{"jsonrpc":"2.0","method":"ping","id":' + str(n).encode() + b"}"
    if -(2**63) <= n < 2**64:
        assert jsonrpc.parse(body)["id"] == n
    else:
        with pytest.raises(InvalidRequest):  # orjson reads it as a float: not a valid id
            jsonrpc.parse(body)


@SETTINGS
@given(text=st.text(any_char, max_size=40), ascii_only=st.booleans())
def test_unicode_ids_and_methods(text: str, ascii_only: bool) -> None:
    body = encode({"jsonrpc": "2.0", "id": text, "method": text}, ascii_only)
    has_surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    if has_surrogate and not ascii_only:  # a surrogate written raw is not UTF-8: not JSON text
        with pytest.raises(ParseError):
            jsonrpc.parse(body)
    else:  # an escaped lone surrogate is legal JSON text (JavaScript peers write it): read as U+FFFD
        msg = jsonrpc.parse(body)
        as_read = json.loads(body)["id"]  # an escaped pair is one character; a half alone stays a half
        readable = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in as_read)
        assert msg["id"] == msg["method"] == readable
        orjson.dumps(msg)  # and it can be written again


def test_huge_method_and_string_values() -> None:
    big = "m" * 2_000_000
    msg = jsonrpc.parse(orjson.dumps({"jsonrpc": "2.0", "id": big, "method": big, "params": {"s": big}}))
    assert jsonrpc.classify(msg) == "request" and len(msg["method"]) == len(big)


# ------------------------------------------------------------------------------------------- known bug
def echo_problem(msg: jsonrpc.Message) -> str | None:
    """Why the hub could not echo this message's id (str() for the reverse map, dumps for replies)."""
    rid = msg.get("id")
    try:
        str(rid)
        orjson.dumps(jsonrpc.error(rid, {"code": -32600, "message": "x"}))
    except (RecursionError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@settings(max_examples=50, deadline=None)
@given(depth=st.integers(min_value=0, max_value=ORJSON_MAX_DEPTH - 2), kind=st.sampled_from(["result", "error"]))
@example(depth=300, kind="result")
@example(depth=1000, kind="error")
def test_what_parse_accepts_can_be_echoed(depth: int, kind: str) -> None:
    body = b'{"jsonrpc":"2.0","' + kind.encode() + b'":{},"id":' + nest(depth, "l", b"1") + b"}"
    try:
        msg = jsonrpc.parse(body)
    except InvalidRequest:
        return  # the fixed behaviour: such an id is not a valid response
    assert echo_problem(msg) is None
