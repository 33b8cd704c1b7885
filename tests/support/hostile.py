"""Hostile input for the stdio entry points (`serve --transport stdio`, `onemcp proxy`): lines a client
might write (random bytes, random JSON, batches, JSON-RPC-looking objects with every field absent, right
or of a wrong type, very deep nesting), what they call for, and the checks on every line written back.
Shared by `tests/downstream/test_hostile_stdio.py` and `tests/cli/test_hostile_proxy.py`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import INTERNAL_ERROR, ProtocolError

TRACEBACK = "Traceback (most recent call last)"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
PV = "io.modelcontextprotocol/protocolVersion"
CC = "io.modelcontextprotocol/clientCapabilities"
ENVELOPE = {PV: MODERN, CC: {}}


@dataclass
class Pipe:
    """The client's end: lines it writes, and every line the server wrote, raw (a malformed one is kept)."""

    to_hub: Any
    from_client: Any
    written: list[bytes] = field(default_factory=list)
    wrote: anyio.Event = field(default_factory=anyio.Event)

    async def read_line(self) -> bytes:
        try:
            line: bytes = await self.from_client.receive()
        except anyio.EndOfStream:
            return b""
        return line

    async def write(self, data: bytes) -> None:
        self.written.append(data)
        self.wrote.set()
        self.wrote = anyio.Event()

    async def send(self, line: bytes) -> None:
        await self.to_hub.send(line)

    def replies_since(self, start: int) -> list[dict[str, Any]]:
        out = []
        for raw in self.written[start:]:
            doc = json.loads(raw)
            if isinstance(doc, dict) and "method" not in doc:
                out.append(doc)
        return out

    async def until(self, done: Any) -> None:
        while not done():
            await self.wrote.wait()


DEADLINE = 20.0  # one example
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays stable
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ----------------------------------------------------------------------------------------- strategies
any_char = st.characters(codec=None, exclude_categories=())  # lone surrogates and NUL too
texts = st.text(any_char, max_size=12)
huge_ints = st.integers(min_value=2**63 - 1, max_value=2**80) | st.integers(min_value=-(2**80), max_value=-(2**63))
scalars = st.none() | st.booleans() | st.integers() | huge_ints | st.floats() | texts
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=8
)
ABSENT = object()
# Nothing that holds (subscriptions/listen, the held or sleeping tools): every request is answered at once.
METHODS = [
    "initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get", "resources/list",
    "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe",
    "completion/complete", "logging/setLevel", "tasks/get", "tasks/list", "tasks/result", "tasks/cancel",
    "server/discover", "notifications/initialized", "notifications/cancelled", "notifications/progress",
    "notifications/roots/list_changed", "no/such/method",
]  # fmt: skip
TOOLS = ["echo", "fail", "error", "running", "nope", "fx__echo"]
URIS = ["fixture://static", "fixture://item/1", "nope://x", ""]
metas = st.fixed_dictionaries(
    {},
    optional={
        PV: st.sampled_from([MODERN, MODERN, LEGACY, "", "1999-01-01"]) | json_values,
        CC: st.just({}) | json_values,
        "io.modelcontextprotocol/logLevel": st.sampled_from(["debug", "loud"]) | json_values,
        "progressToken": st.integers() | texts | json_values,
    },
)
param_objects = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(TOOLS) | texts | json_values,
        "arguments": st.dictionaries(st.sampled_from(["message", "x"]) | texts, json_values, max_size=2) | json_values,
        "uri": st.sampled_from(URIS) | texts | json_values,
        "cursor": json_values,
        "level": st.sampled_from(["debug", "info", "loud"]) | json_values,
        "requestId": st.integers(min_value=0, max_value=3) | texts | st.booleans() | json_values,
        "taskId": texts | json_values,
        "ref": json_values,
        "protocolVersion": st.sampled_from([LEGACY, MODERN]) | json_values,
        "capabilities": json_values,
        "_meta": metas | json_values,
    },
)
ids = st.one_of(
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    texts,
    huge_ints,
    st.sampled_from([ABSENT, None, True, False, 1.0, 1.5, 1e300, -0.0]),
    json_values,
)
methods = st.one_of(st.sampled_from(METHODS), st.sampled_from(METHODS), texts, json_values)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """JSON-RPC-looking objects, every field absent, right, or of a wrong type; half of those with object
    params claim the 2026-07-28 era (a `_meta` envelope)."""
    fields = {
        "jsonrpc": st.sampled_from(["2.0"] * 8 + ["1.0", 2.0, ABSENT]),
        "id": ids,
        "method": methods,
        "params": st.just(ABSENT) | st.none() | json_values | param_objects | param_objects,
        "result": st.just(ABSENT) | st.just(ABSENT) | json_values,
        "error": st.just(ABSENT) | st.just(ABSENT) | json_values,
    }
    msg = {key: draw(strategy) for key, strategy in fields.items()}
    msg = {k: v for k, v in msg.items() if v is not ABSENT}
    params = msg.get("params")
    if isinstance(params, dict) and "_meta" not in params and draw(st.booleans()):
        msg["params"] = {**params, "_meta": dict(ENVELOPE)}
    return msg


def encode(msg: Any, ascii_only: bool) -> bytes:
    """As a client writes a line: JSON on one line (a lone surrogate escaped, or written raw as bytes that
    are not UTF-8)."""
    return json.dumps(msg, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass").replace(b"\n", b"\\n")


def nest(depth: int, inner: bytes) -> bytes:
    return b'{"k":[' * depth + inner + b"]}" * depth


@st.composite
def deep_lines(draw: st.DrawFn) -> bytes:
    """A valid-looking request with one part nested up to 1100 levels (orjson reads 1024)."""
    inner = nest(draw(st.integers(min_value=1, max_value=550)), b"1")
    method = draw(st.sampled_from(["tools/call", "ping", "logging/setLevel", "notifications/cancelled"]))
    head = b'{"jsonrpc":"2.0","id":7,"method":"' + method.encode() + b'"'
    meta = b',"_meta":{"' + PV.encode() + b'":"' + MODERN.encode() + b'"}' if draw(st.booleans()) else b""
    return draw(
        st.sampled_from(
            [
                inner,
                b"[" + inner + b"]",
                b'{"jsonrpc":"2.0","method":"ping","id":' + inner + b"}",
                b'{"jsonrpc":"2.0","result":{},"id":' + inner + b"}",
                head + b',"params":{"name":"echo","arguments":{"a":' + inner + b"}" + meta + b"}}",
                head + b',"params":{"requestId":' + inner + meta + b"}}",
                b'{"jsonrpc":"2.0","id":7,"method":' + inner + b"}",
            ]
        )
    )


def batch_of(items: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(items)


lines = st.one_of(
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")),
    st.builds(encode, json_values, st.booleans()),
    st.builds(encode, messages(), st.booleans()),
    st.builds(encode, messages(), st.booleans()),
    st.builds(encode, messages(), st.booleans()),
    st.lists(messages(), min_size=0, max_size=3).map(lambda ms: encode(ms, True)),  # a batch
    deep_lines(),
)


# ----------------------------------------------------------------------------------------- the checks
@dataclass
class Expected:
    """What the lines of one example call for: a reply under each of these ids (Counter: how many)."""

    ids: Counter[str] = field(default_factory=Counter)
    cancels: bool = False


def key(rid: Any) -> str:
    return orjson.dumps(rid).decode()


def expect(line: bytes, out: Expected) -> None:
    if not line.strip():
        return  # a blank line is skipped
    try:
        msg = jsonrpc.parse(line)
    except ProtocolError as exc:
        out.ids[key(exc.rid)] += 1
        return
    kind = jsonrpc.classify(msg)
    if kind == "request":
        out.ids[key(msg["id"])] += 1
    elif msg.get("method") == "notifications/cancelled":
        out.cancels = True


def note(what: str) -> None:
    if currently_in_test_context():  # (a repro script calls these checks outside Hypothesis)
        event(what)


def check_line(raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8")  # (strict: a lone surrogate must be escaped, never written as bytes)
    assert TRACEBACK not in text, text[:500]
    assert raw.endswith(b"\n") and b"\n" not in raw[:-1], raw[:300]
    doc = json.loads(text)
    assert isinstance(doc, dict) and doc.get("jsonrpc") == "2.0", doc
    if "method" in doc:
        assert isinstance(doc["method"], str), doc
        return doc
    assert ("result" in doc) != ("error" in doc), doc
    if "error" in doc:
        err = doc["error"]
        assert isinstance(err, dict) and type(err.get("code")) is int and isinstance(err.get("message"), str), doc
        assert err["code"] != INTERNAL_ERROR, f"the hub's own fault, for what the client sent: {doc}"
        note(f"error {err['code']}")
    else:
        note("result")
    return doc


def line(msg: dict[str, Any]) -> bytes:
    return orjson.dumps(msg) + b"\n"


async def exchange(pipe: Pipe, sent: list[bytes], sentinel: str) -> None:
    """Write `sent` and a 2026-07-28 ping under `sentinel`; wait for every reply they call for (a hang: the
    caller's deadline), then check every line written meanwhile."""
    want = Expected()
    for one in sent:
        expect(one, want)
    want.ids[key(sentinel)] += 1
    start = len(pipe.written)

    def done() -> bool:
        have = Counter(key(r.get("id")) for r in pipe.replies_since(start))
        if want.cancels:  # a cancelled request is not answered: the ping after them is enough
            return have[key(sentinel)] > 0
        return all(have[rid] >= n for rid, n in want.ids.items())

    for one in sent:
        await pipe.send(one + b"\n")
    await pipe.send(line({"jsonrpc": "2.0", "id": sentinel, "method": "ping"}))  # the legacy session
    await pipe.until(done)
    for raw in pipe.written[start:]:
        check_line(raw)
    assert [r.get("result") for r in pipe.replies_since(start) if r.get("id") == sentinel] == [{}]
