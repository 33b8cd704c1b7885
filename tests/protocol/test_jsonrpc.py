"""JSON-RPC envelopes: parsing, classification errors and their codes, reply builders."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import (
    ECHO,
    INVALID_REQUEST,
    PARSE_ERROR,
    InvalidParams,
    InvalidRequest,
    ParseError,
    ProtocolError,
    echo,
)


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"{'a': 1}", b"\xff\xfe", b'{"jsonrpc": "2.0",}'])
def test_not_json_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        jsonrpc.parse(body)
    assert info.value.code == PARSE_ERROR == -32700
    assert info.value.to_error()["code"] == -32700
    assert "Parse error" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]',
        b"[]",
        b'"ping"',
        b"1",
        b"null",
    ],
)
def test_non_object_is_an_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        jsonrpc.parse(body)
    assert info.value.code == INVALID_REQUEST == -32600
    assert not isinstance(info.value, ParseError)


@pytest.mark.parametrize(
    ("msg", "fragment"),
    [
        ({"id": 1, "method": "ping"}, "jsonrpc"),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, "jsonrpc"),
        ({"jsonrpc": 2.0, "id": 1, "method": "ping"}, "jsonrpc"),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, "id"),
        ({"jsonrpc": "2.0", "id": False, "method": "ping"}, "id"),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, "id"),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, "id"),
        ({"jsonrpc": "2.0", "id": [1], "method": "ping"}, "id"),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, "method"),
        ({"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1, 2]}, "params"),
        ({"jsonrpc": "2.0", "id": 1, "method": "x", "params": "p"}, "params"),
        ({"jsonrpc": "2.0", "method": "x", "params": 3}, "params"),
        ({"jsonrpc": "2.0"}, "neither"),
        ({"jsonrpc": "2.0", "id": 1}, "neither"),
        ({"jsonrpc": "2.0", "result": {}}, "neither"),
    ],
)
def test_invalid_envelopes(msg: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        jsonrpc.parse(orjson.dumps(msg))
    assert info.value.code == -32600
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("msg", "rid"),
    [
        ({"id": 5, "method": "ping"}, 5),
        ({"jsonrpc": "1.0", "id": "a", "method": "ping"}, "a"),
        ({"jsonrpc": "2.0", "id": 3, "method": 7}, 3),
        ({"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1, 2]}, 1),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None),  # no id that reads
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 2}, None),  # maybe a reply that lost its result: its id is the peer's
    ],
)
def test_a_malformed_request_is_refused_under_its_id(msg: dict[str, Any], rid: Any) -> None:
    """Its error went back under "id": null, so the client waiting for that id never heard of it."""
    with pytest.raises(InvalidRequest) as info:
        jsonrpc.parse(orjson.dumps(msg))
    assert jsonrpc.refusal(info.value)["id"] == rid


def test_errors_are_protocol_errors() -> None:
    assert issubclass(ParseError, ProtocolError)
    assert issubclass(InvalidRequest, ProtocolError)


@pytest.mark.parametrize(
    ("msg", "kind"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, "request"),
        ({"jsonrpc": "2.0", "id": "abc", "method": "ping"}, "request"),
        ({"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"name": "x"}}, "request"),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": None}, "request"),
        ({"jsonrpc": "2.0", "method": "notifications/initialized"}, "notification"),
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, "response"),
        ({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "x"}}, "response"),
    ],
)
def test_classify(msg: dict[str, Any], kind: str) -> None:
    assert jsonrpc.classify(msg) == kind


def test_parse_returns_the_dict_unchanged() -> None:
    msg = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "t", "arguments": {"a": [1]}}}
    assert jsonrpc.parse(orjson.dumps(msg)) == msg


def test_parse_accepts_whitespace_and_unicode() -> None:
    body = ' \n{"jsonrpc": "2.0", "id": "é", "method": "ping"}\n '.encode()
    assert jsonrpc.parse(body)["id"] == "é"


def test_builders() -> None:
    assert jsonrpc.result(1, {"ok": True}) == {"jsonrpc": "2.0", "id": 1, "result": {"ok": True}}
    err = {"code": -32601, "message": "Method not found"}
    assert jsonrpc.error(None, err) == {"jsonrpc": "2.0", "id": None, "error": err}
    assert jsonrpc.notification("notifications/tools/list_changed") == {
        "jsonrpc": "2.0",
        "method": "notifications/tools/list_changed",
    }
    assert jsonrpc.notification("m", {"a": 1}) == {"jsonrpc": "2.0", "method": "m", "params": {"a": 1}}


def test_builders_classify_as_their_kind() -> None:
    assert jsonrpc.classify(jsonrpc.result(1, {})) == "response"
    assert jsonrpc.classify(jsonrpc.error(1, {"code": 1, "message": "m"})) == "response"
    assert jsonrpc.classify(jsonrpc.notification("m")) == "notification"


@pytest.mark.parametrize("rid", [1, 'a"b', None, 0, "ü"])
def test_splice_result_equals_serialised_result(rid: int | str | None) -> None:
    result = {"tools": [{"name": "t", "inputSchema": {"type": "object"}}]}
    spliced = jsonrpc.splice_result(rid, orjson.dumps(result))
    assert orjson.loads(spliced) == jsonrpc.result(rid, result)


def test_dumps_is_compact_bytes() -> None:
    assert jsonrpc.dumps({"a": [1, 2]}) == b'{"a":[1,2]}'


def test_a_request_of_too_many_objects_and_arrays_is_refused_before_it_is_parsed() -> None:
    many = b"[]," * jsonrpc.MAX_REQUEST_CONTAINERS
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":[' + many + b"[]]}}"
    with pytest.raises(InvalidRequest, match="more than 200000 objects and arrays"):
        jsonrpc.parse(body)
    # brackets inside strings are text, however many (a JSON document sent as an argument)
    text = orjson.dumps({"t": '[{"k": "\\"]"},' * jsonrpc.MAX_REQUEST_CONTAINERS})
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","arguments":' + text + b"}}"
    assert jsonrpc.parse(body)["params"]["arguments"] == orjson.loads(text)
    at_most = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":[' + many[: -3 * 4] + b"[]]}}"
    assert len(jsonrpc.parse(at_most)["params"]["x"]) == jsonrpc.MAX_REQUEST_CONTAINERS - 3  # and 3 around them


@pytest.mark.parametrize("rid", [b"1e3", b"1.0", b"18446744073709551616", b"-9223372036854775809"])
def test_an_integer_id_the_hub_cannot_echo_is_refused_for_what_it_is(rid: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        jsonrpc.parse(b'{"jsonrpc":"2.0","id":' + rid + b',"method":"ping"}')
    assert "64 bits" in info.value.message and jsonrpc.refusal(info.value)["id"] is None


def test_a_too_deep_request_is_refused_under_its_own_id_at_any_depth() -> None:
    """JSON-RPC 2.0 §5: the id is null only when it could not be read. Past the parser's own limit
    it cannot be, but the answer is the same "too deep"."""
    for depth, rid in ((210, 7), (2000, None)):
        body = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"a":' + b"[" * depth + b"]" * depth + b"}}"
        with pytest.raises(InvalidParams) as info:
            jsonrpc.parse(body)
        assert "nests deeper than" in info.value.message
        assert jsonrpc.refusal(info.value) == {"jsonrpc": "2.0", "id": rid, "error": info.value.to_error()}


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (rb'"abc\ud83d"', "abc\ufffd"),  # a high half, cut off (JavaScript's 'abc😀'.slice(0, 4))
        (rb'"\udc00x"', "\ufffdx"),  # a low half alone
        (rb'"\ud83d\u0041"', "\ufffdA"),  # a high half followed by no low one
        (rb'"\ud83d\ude00 and \ud83d"', "\U0001f600 and \ufffd"),  # a pair stays a pair
    ],
)
def test_a_lone_surrogate_escape_is_read_and_can_be_written_again(raw: bytes, text: str) -> None:
    """RFC 8259 §8.2 lets JSON text hold them; orjson refuses to read them, and to write them."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"s":' + raw + b"}}}"
    msg = jsonrpc.parse(body)
    assert msg["params"]["arguments"]["s"] == text
    assert orjson.loads(jsonrpc.dumps(msg)) == msg
    keyed = jsonrpc.loads(b'{"k\\ud800":[' + raw + b"]}")
    assert keyed == {"k\ufffd": [text]}


@pytest.mark.parametrize("body", [b'{"a":"\\ud83d", "b": NaN}', b'{"a":"\\ud83d",}', b'["\\ud83d"'])
def test_a_lone_surrogate_does_not_let_other_faults_through(body: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError, match="surrogate"):
        jsonrpc.loads(body)


@pytest.mark.parametrize(
    "line",
    [
        b'{"result":{"content":[{"type":"text","text":"caf\xe9"}]},"jsonrpc":"2.0","id":7}',  # as JavaScript writes
        b'{"jsonrpc":"2.0","id":7,"result":{"text":"caf\xe9"}}',
        b'{"error":{"code":1,"message":"caf\xe9"},"jsonrpc":"2.0","id":7}',
    ],
)
def test_an_unreadable_reply_answers_its_call_with_the_reason(line: bytes) -> None:
    msg = jsonrpc.load_bounded(line, "upstream s")
    assert msg["id"] == 7
    assert msg["error"]["message"].startswith("upstream s sent a reply that is not valid JSON (")


@pytest.mark.parametrize(
    "line",
    [
        b'{"method":"sampling/createMessage","params":{"t":"\xe9"},"jsonrpc":"2.0","id":7}',  # a request: not ours
        b'{"result":{"t":"\xe9","id":3}}',  # an id inside the result is not the reply's
        b'{"result":{"t":"\xe9"},"id":3',  # cut short
        b"garbage",
    ],
)
def test_what_is_not_plainly_a_reply_stays_unreadable(line: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        jsonrpc.load_bounded(line, "upstream s")


@pytest.mark.parametrize("number", [b"19793958284654599470333", b"-9223372036854775809", b"1e400", b"1.5", b"7"])
def test_a_message_with_a_lone_surrogate_reads_its_numbers_as_orjson_does(number: bytes) -> None:
    """Found by the fuzzer: an id past 64 bits came back as an int that orjson cannot write (a 500)."""
    try:
        expected: Any = orjson.loads(number)
    except orjson.JSONDecodeError:
        with pytest.raises(orjson.JSONDecodeError):
            jsonrpc.loads(b'["\\ud800",' + number + b"]")
        return
    assert jsonrpc.loads(b'["\\ud800",' + number + b"]") == ["\ufffd", expected]
    jsonrpc.dumps(jsonrpc.loads(b'["\\ud800",' + number + b"]"))


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"x":"aaaa', 9),  # the Python SDK's order
        (b' { "method" : "ping" , "jsonrpc" : "2.0" , "id" : "r-1" , "params": {', "r-1"),
        (b'{"id":-3,"jsonrpc":"2.0","method":"ping","params":{"a', -3),
        (b'{"method":"tools/call","params":{"id":5,"x":"aaa', None),  # an "id" inside the params is not it
        (b'{"method":"tools/call","params":{"x":"a"},"jsonrpc":"2.0","id":7', None),  # the TypeScript SDK's: cut
        (b'{"jsonrpc":"2.0","id":12', None),  # cut inside the number: 12 may be 123
        (b'{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"aaa', None),  # a response: the
        (b'{"jsonrpc":"2.0","id":5,"error":{"code":1,"message":"aaa', None),  # id is the hub's own request's
        (b'{"id":5,"jsonrpc":"2.0","params":{"method":"x"', None),
        (b'{"jsonrpc":"2.0","id":{"a":1},"method":"x"', None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"x"', None),
    ],
)
def test_a_request_too_long_to_read_is_known_by_the_id_its_head_gives(head: bytes, expected: object) -> None:
    assert jsonrpc.request_id(head) == expected


@pytest.mark.parametrize(("value", "is_id"), [(1, True), ("x", True), (0, True), (True, False), (False, False),
                                              (1.0, False), (None, False), ([1], False)])  # fmt: skip
def test_is_request_id(value: Any, is_id: bool) -> None:
    assert jsonrpc.is_request_id(value) is is_id


def test_an_error_repeats_a_long_input_by_its_start_and_its_length() -> None:
    assert echo("short name") == "short name"
    assert echo(7) == "7"
    assert echo("x" * ECHO) == "x" * ECHO
    assert echo("y" * 100_000) == "y" * ECHO + "... (100000 characters)"
