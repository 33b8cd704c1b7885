"""Hostile input on stdio: whatever a client writes to `serve --transport stdio`, each line it gets back is
one well-formed JSON-RPC message, and the hub goes on serving.

`test_hostile_http.py` drives the HTTP entry points; this is the same matrix on the stdio one, where the
era is chosen message by message (`stateless.claims_modern`) and one session lives as long as the process.
One in-process hub (one in-memory fixture upstream) and one `StdioServer` serve the whole module.
Hypothesis writes a few lines per example: random bytes, random JSON (arrays: batches; scalars), and
JSON-RPC-looking objects with every field absent, right or of a wrong type (ids of every type: floats,
objects, huge integers; methods that are not strings; params that are not objects; lone surrogates
escaped in JSON, NUL; very deep nesting), some of them claiming the 2026-07-28 era. Then a ping.

Properties: every line written is a JSON object with `"jsonrpc": "2.0"` and no traceback text; an
error has an integer code and a string message, and is never -32603 (the hub's own fault) for what the
client sent; every line `jsonrpc.parse` refuses is answered under the id it read (or null); every request
is answered under its id (a hang fails the example's deadline), unless the example cancels something;
and the ping after them is answered. After the module the hub still answers a call in both eras.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from onemcp.auth.principal import ANONYMOUS
from onemcp.downstream.stdio import StdioServer
from onemcp.protocol import jsonrpc
from onemcp.protocol.errors import INTERNAL_ERROR, ProtocolError
from support.inprocess import fixture, inprocess_hub, tool_call

pytestmark = pytest.mark.anyio

DEADLINE = 20.0  # one example
TRACEBACK = "Traceback (most recent call last)"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
PV = "io.modelcontextprotocol/protocolVersion"
CC = "io.modelcontextprotocol/clientCapabilities"
ENVELOPE = {PV: MODERN, CC: {}}
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays stable
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# ------------------------------------------------------------------------------------------ the target
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


@dataclass
class Target:
    hub: Any
    pipe: Pipe
    pings: int = 0


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[Target]:
    to_hub, from_client = anyio.create_memory_object_stream[bytes](64)
    pipe = Pipe(to_hub, from_client)
    async with to_hub, from_client, inprocess_hub({"fx": fixture()}) as hub, anyio.create_task_group() as tg:
        server = StdioServer(hub.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
        tg.start_soon(server.serve)
        init = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {"protocolVersion": LEGACY}}
        with anyio.fail_after(DEADLINE):
            await pipe.send(orjson.dumps(init) + b"\n")
            await pipe.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
            await pipe.until(lambda: any(r.get("id") == "init" for r in pipe.replies_since(0)))
        t = Target(hub, pipe)
        yield t
        await assert_healthy(t)
        to_hub.close()  # end of input: the server drains and ends


async def ask(t: Target, msg: dict[str, Any]) -> dict[str, Any]:
    start = len(t.pipe.written)
    await t.pipe.send(orjson.dumps(msg) + b"\n")
    mine: list[dict[str, Any]] = []

    def answered() -> bool:
        mine[:] = [r for r in t.pipe.replies_since(start) if r.get("id") == msg["id"]]
        return bool(mine)

    await t.pipe.until(answered)
    return mine[0]


async def assert_healthy(t: Target) -> None:
    """The stdio session still answers: a ping, a legacy call and a 2026-07-28 call."""
    with anyio.fail_after(DEADLINE):
        t.pings += 1
        pong = await ask(t, {"jsonrpc": "2.0", "id": f"health-{t.pings}", "method": "ping"})
        assert pong.get("result") == {}, pong
        params = tool_call("echo", message="still here")
        legacy = await ask(t, {"jsonrpc": "2.0", "id": "legacy-call", "method": "tools/call", "params": params})
        assert legacy["result"]["content"][0]["text"] == "still here", legacy
        modern = {**params, "_meta": ENVELOPE}
        reply = await ask(t, {"jsonrpc": "2.0", "id": "modern-call", "method": "tools/call", "params": modern})
        assert reply["result"]["content"][0]["text"] == "still here", reply


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
        event(f"error {err['code']}")
    else:
        event("result")
    return doc


# ------------------------------------------------------------------------------------------ the tests
@settings(FUZZ, max_examples=1500)
@given(sent=st.lists(lines, min_size=1, max_size=4))
@example(sent=[b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}', b"[]", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]'])
@example(sent=[b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping","params":{"_meta":{"' + PV.encode() + b'":1}}}'])
@example(sent=[b'{"jsonrpc":"2.0","id":{"a":1},"result":{}}', b'{"jsonrpc":"2.0","id":null,"error":{}}'])
@example(sent=[b'{"jsonrpc":"2.0","id":18446744073709551616,"method":"ping"}', b"\x00", b"\xff\xfe"])
async def test_random_lines(target: Target, sent: list[bytes]) -> None:
    want = Expected()
    for line in sent:
        expect(line, want)
    target.pings += 1
    sentinel = f"after-{target.pings}"
    want.ids[key(sentinel)] += 1
    pipe = target.pipe
    start = len(pipe.written)

    def got() -> Counter[str]:
        return Counter(key(r.get("id")) for r in pipe.replies_since(start))

    def done() -> bool:
        have = got()
        if want.cancels:  # a cancelled request is not answered: the ping after them is enough
            return have[key(sentinel)] > 0
        return all(have[rid] >= n for rid, n in want.ids.items())

    with anyio.fail_after(DEADLINE):
        for line in sent:
            await pipe.send(line + b"\n")
        await pipe.send(orjson.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "ping"}) + b"\n")
        await pipe.until(done)
    for raw in pipe.written[start:]:
        check_line(raw)


# ------------------------------------------------------------------------------------- regressions
async def test_a_cancel_whose_request_id_is_true_cancels_no_2026_request() -> None:
    """JSON `true` is not the request whose id is 1 (True == 1 in Python): a 2026-07-28 call with id 1 is
    still answered after a `notifications/cancelled` naming `true`."""
    to_hub, from_client = anyio.create_memory_object_stream[bytes](8)
    pipe = Pipe(to_hub, from_client)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {**tool_call("hold"), "_meta": ENVELOPE}}
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": True}}
    with anyio.fail_after(DEADLINE):
        async with to_hub, from_client, inprocess_hub({"fx": fixture()}) as hub, anyio.create_task_group() as tg:
            server = StdioServer(hub.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
            tg.start_soon(server.serve)
            conn = hub.app.hub.pool.get("fx")
            assert conn is not None
            await pipe.send(orjson.dumps(call) + b"\n")
            while conn.in_flight == 0:
                await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
            await pipe.send(orjson.dumps(cancel) + b"\n")
            pong = {"jsonrpc": "2.0", "id": "pong", "method": "ping"}
            await pipe.send(orjson.dumps(pong) + b"\n")  # answered after the cancel was handled
            await pipe.until(lambda: any(r.get("id") == "pong" for r in pipe.replies_since(0)))
            hub.upstreams.let_go.set()
            await pipe.until(lambda: any(r.get("id") == 1 for r in pipe.replies_since(0)))
            to_hub.close()
    [reply] = [r for r in pipe.replies_since(0) if r.get("id") == 1]
    assert reply["result"]["content"][0]["text"] == "let go", reply
