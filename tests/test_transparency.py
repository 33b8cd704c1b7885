"""Transparency, checked differentially: one scripted conversation held with a fixture server directly and
again through an in-process hub fronting only that server; after the changes docs/server-behaviour.md
documents are undone (names and URIs prefixed, `[server]` on error messages, loggers, progress tokens,
the hub's own answers to list paging and its capabilities, the 2026-07-28 envelope), the two must be
equal. Any other difference is a regression of the hub's promise that a client sees what it would see
talking to the server directly.

The hand-run harness this grew from (every third-party server, every entry point and upstream transport)
is described in the session report; this keeps its core in the suite.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
import pytest
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from fixtures.upstream import build_server, parse_args
from onemcp.demo.memory import serve_streams
from support.inprocess import LEGACY, InProcessHub, LegacySession, fixture, inprocess_hub, modern_request

pytestmark = pytest.mark.anyio
Json = dict[str, Any]
DEADLINE = 10.0
CAPABILITIES: Json = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}}
ROOTS = {"roots": [{"uri": "file:///tmp/project", "name": "project"}]}
SAMPLED = {"role": "assistant", "content": {"type": "text", "text": "sampled"}, "model": "m", "stopReason": "endTurn"}
LISTS = ("tools/list", "prompts/list", "resources/list", "resources/templates/list")

# (method, params, legacy only): what the client asks, in order. Legacy-only steps need a session (logs
# without a logLevel, server->client requests a stateless request would get as `input_required`).
SCRIPT: list[tuple[str, Json, bool]] = [
    *((method, {}, False) for method in LISTS),
    ("tools/call", {"name": "echo", "arguments": {"message": 'h\u00e9llo \u2028 \U0001f600 "q" </script>'}}, False),
    ("tools/call", {"name": "echo", "arguments": {}}, False),
    ("tools/call", {"name": "fail", "arguments": {}}, False),
    ("tools/call", {"name": "error", "arguments": {}}, False),
    # a method the hub routes that the server says it does not have: its data too, not the hub's own -32601
    ("tools/call", {"name": "error", "arguments": {"code": -32601, "message": "nope", "data": {"m": [1]}}}, False),
    ("tools/call", {"name": "error", "arguments": {"code": -32601, "message": "Method not found", "data": "x"}}, False),
    (
        "tools/call",
        {"name": "whoami", "arguments": {"n": [1, 2.5, None, {"k": True}]}, "_meta": {"x.test/k": [1]}},
        False,
    ),
    ("tools/call", {"name": "progress", "arguments": {"steps": 2}, "_meta": {"progressToken": "tok"}}, False),
    ("tools/call", {"name": "progress", "arguments": {"steps": 1}, "_meta": {"progressToken": 0}}, False),
    ("tools/call", {"name": "tool_1", "arguments": {"z": [1, 2]}}, False),
    ("tools/call", {"name": "log", "arguments": {"message": "m", "count": 2}}, True),
    ("tools/call", {"name": "sample", "arguments": {"prompt": "p"}}, True),
    ("tools/call", {"name": "roots", "arguments": {}}, True),
    ("tools/call", {"name": "elicit", "arguments": {}}, True),
    ("resources/read", {"uri": "fixture://static"}, False),
    ("resources/read", {"uri": "fixture://binary"}, False),
    ("resources/read", {"uri": "fixture://item/42"}, False),
    ("prompts/get", {"name": "simple"}, False),
    ("prompts/get", {"name": "with_args", "arguments": {"topic": "tides"}}, False),
    ("prompts/get", {"name": "with_args", "arguments": {}}, False),
    (
        "completion/complete",
        {"ref": {"type": "ref/prompt", "name": "with_args"}, "argument": {"name": "topic", "value": "t"}},
        False,
    ),
    ("resources/subscribe", {"uri": "fixture://static"}, True),
    ("tools/call", {"name": "touch", "arguments": {"uri": "fixture://static"}}, True),
    ("resources/unsubscribe", {"uri": "fixture://static"}, True),
]


def answer(request: Json) -> Json:
    """What this client answers a server's request."""
    method = request.get("method")
    if method == "sampling/createMessage":
        return SAMPLED
    if method == "roots/list":
        return ROOTS
    if method == "elicitation/create":
        return {"action": "decline"}
    return {}


# ------------------------------------------------------------------------------------------ direct


class Direct:
    """The fixture server over in-memory streams, and a client that answers its requests."""

    def __init__(self, send: ObjectSendStream[bytes], receive: ObjectReceiveStream[bytes]) -> None:
        self.send, self.receive = send, receive

    async def write(self, message: Json) -> None:
        await self.send.send(orjson.dumps(message))

    async def ask(self, rid: int | str, method: str, params: Json) -> tuple[Json, list[Json]]:
        """The reply, and what came before it (the server's requests, answered)."""
        await self.write({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        before: list[Json] = []
        with anyio.fail_after(DEADLINE):
            while True:
                message: Json = orjson.loads(await self.receive.receive())
                if "method" not in message and message.get("id") == rid:
                    return message, before
                before.append(message)
                if "method" in message and "id" in message:
                    await self.write({"jsonrpc": "2.0", "id": message["id"], "result": answer(message)})

    async def listed(self, rid: int, method: str) -> tuple[Json, list[Json]]:
        """A list read to its last page (the hub answers lists in one page)."""
        reply, before = await self.ask(rid, method, {})
        page = 0
        while isinstance(reply.get("result"), dict) and reply["result"].get("nextCursor"):
            page += 1
            more, also = await self.ask(f"{rid}.{page}", method, {"cursor": reply["result"]["nextCursor"]})
            before += also
            field = next(k for k, v in more["result"].items() if isinstance(v, list))
            reply["result"][field] += more["result"][field]
            reply["result"]["nextCursor"] = more["result"].get("nextCursor")
        return reply, before


@asynccontextmanager
async def direct(args: list[str]) -> AsyncIterator[Direct]:
    to_server, server_inbox = anyio.create_memory_object_stream[bytes](math.inf)
    server_outbox, from_server = anyio.create_memory_object_stream[bytes](math.inf)
    async with to_server, server_inbox, server_outbox, from_server, anyio.create_task_group() as tg:
        tg.start_soon(serve_streams, build_server(parse_args(args)), server_inbox, server_outbox)
        client = Direct(to_server, from_server)
        params = {"protocolVersion": LEGACY, "capabilities": CAPABILITIES, "clientInfo": {"name": "t", "version": "0"}}
        await client.ask(0, "initialize", params)
        await client.write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        try:
            yield client
        finally:
            tg.cancel_scope.cancel()


async def converse_direct(args: list[str], steps: list[tuple[str, Json]]) -> list[Json]:
    out: list[Json] = []
    async with direct(args) as client:
        await client.ask("level", "logging/setLevel", {"level": "debug"})  # the hub's legacy sessions hear every line
        for rid, (method, params) in enumerate(steps, start=1):
            if method in LISTS:
                reply, before = await client.listed(rid, method)
            else:
                reply, before = await client.ask(rid, method, copy.deepcopy(params))
            out.append({"step": f"{rid} {method} {params}", "reply": reply, "before": before})
    return out


# ------------------------------------------------------------------------------------------ via the hub


def shown(method: str, params: Json, prefixed: bool) -> Json:
    """The params as a client of the hub writes them (names and URIs as the hub shows them)."""
    params = copy.deepcopy(params)
    if not prefixed:
        return params
    if method in ("tools/call", "prompts/get"):
        params["name"] = f"srv__{params['name']}"
    if "uri" in params:
        params["uri"] = f"srv+{params['uri']}"
    ref = params.get("ref")
    if isinstance(ref, dict) and "name" in ref:
        ref["name"] = f"srv__{ref['name']}"
    return params


async def ask_legacy(session: LegacySession, rid: int, method: str, params: Json) -> tuple[Json, list[Json]]:
    before: list[Json] = []
    with anyio.fail_after(DEADLINE):
        async with session.call(method, params, rid=rid) as response:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                (reply,) = await response.messages()
                return reply, before
            while True:
                message = await response.message()
                if "method" not in message and message.get("id") == rid:
                    return message, before
                before.append(message)
                if "method" in message and "id" in message:
                    status = await session.post({"jsonrpc": "2.0", "id": message["id"], "result": answer(message)})
                    assert status == 202, status


class Stream:
    """A legacy session's GET stream, read in the background: where the hub puts what belongs to no call
    (documented: a resource update, say, which a server over stdio sent during the call that caused it)."""

    def __init__(self) -> None:
        self.got: list[Json] = []
        self.more = anyio.Event()

    async def read(self, session: LegacySession, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with session.listen() as response:
            task_status.started()
            while True:
                self.got.append(await response.message())
                self.more.set()
                self.more = anyio.Event()

    async def take(self, wanted: Json) -> Json | None:
        """`wanted`, once it came on the stream (None if it does not come in time)."""
        with anyio.move_on_after(DEADLINE):
            while True:
                for message in self.got:
                    if undone(message) == undone(wanted):
                        self.got.remove(message)
                        return message
                await self.more.wait()
        return None


def undone(message: Json) -> Json:
    """A message of either side as the other's is matched against it (`Stream.take`)."""
    plain: Json = undo_prefixes(unlogged(message))
    return plain


def unlogged(message: Json) -> Json:
    """A hub's message without the documented change to a log line's logger (`<server>/<logger>`)."""
    plain = {k: v for k, v in message.items() if k != "jsonrpc"}
    params = copy.deepcopy(plain.get("params"))
    plain["params"] = params
    if params is None:
        del plain["params"]
    if plain.get("method") == "notifications/message" and isinstance(params, dict) and "logger" in params:
        logger = str(params["logger"]).removeprefix("srv/")
        if logger == "srv":
            del params["logger"]
        else:
            params["logger"] = logger
    return plain


async def converse_hub(
    hub: InProcessHub, era: str, steps: list[tuple[str, Json]], expected: list[Json], prefixed: bool
) -> list[Json]:
    out: list[Json] = []
    session = await hub.session(capabilities=CAPABILITIES) if era == "legacy" else None
    stream = Stream()
    async with anyio.create_task_group() as tg:
        if session is not None:
            await tg.start(stream.read, session)
        out = await _converse_hub(hub, session, stream, steps, expected, prefixed)
        tg.cancel_scope.cancel()
    return out


async def _converse_hub(
    hub: InProcessHub,
    session: LegacySession | None,
    stream: Stream,
    steps: list[tuple[str, Json]],
    expected: list[Json],
    prefixed: bool,
) -> list[Json]:
    out: list[Json] = []
    for rid, (method, params) in enumerate(steps, start=1):
        sent = shown(method, params, prefixed)
        if session is not None:
            reply, before = await ask_legacy(session, rid, method, sent)
            for message in expected[rid - 1]["before"]:  # a notification of no call: on the GET stream
                if "id" not in message and not any(undone(m) == undone(message) for m in before):
                    found = await stream.take(message)
                    if found is not None:
                        before.append(found)
        else:
            meta = sent.pop("_meta", {})
            headers, body = modern_request(method, capabilities=CAPABILITIES, meta=meta, rid=rid, **sent)
            with anyio.fail_after(DEADLINE):
                response, messages = await hub.client.request("POST", headers=headers, body=body)
            assert response.status in (200, 400, 404), (response.status, messages)
            reply, before = messages[-1], messages[:-1]
        out.append({"step": f"{rid} {method} {params}", "reply": reply, "before": before})
    return out


# ------------------------------------------------------------------------------------------ what may differ

WHOAMI_HUBS_OWN = ("capabilities", "heard", "logLevel")  # the hub's handshake and level, not this client's
PLUMBING = ("crash", "hold", "freeze")
MODERN_ENVELOPE = ("resultType", "ttlMs", "cacheScope")


def undo_prefixes(value: Any) -> Any:
    text = orjson.dumps(value).decode()
    return orjson.loads(re.sub(r'"srv__', '"', text).replace('"srv+', '"'))


def normalised(record: list[Json], *, via_hub: bool, prefixed: bool = False, modern: bool = False) -> list[Json]:
    out = []
    for entry in copy.deepcopy(record):
        reply = entry["reply"]
        reply.pop("jsonrpc", None)
        result, error = reply.get("result"), reply.get("error")
        method = entry["step"].split()[1]
        if isinstance(result, dict):
            if method in LISTS:  # documented: a list result's own _meta and unknown fields are one page's
                result.pop("nextCursor", None)
                result.pop("_meta", None)
                result.pop("vendorExtra", None)
                # test plumbing: the in-memory fixture's `crash`, `hold` and `freeze` differ (support/inprocess.py)
                result["tools"] = [
                    t for t in result.get("tools", []) if str(t.get("name")).removeprefix("srv__") not in PLUMBING
                ]
                if not result["tools"]:
                    del result["tools"]
            if method in ("resources/subscribe", "resources/unsubscribe"):  # documented: counted by the hub
                entry["reply"]["result"] = {}
            if modern:
                for key in MODERN_ENVELOPE:
                    result.pop(key, None)
                meta = result.get("_meta")
                if isinstance(meta, dict):
                    meta.pop("io.modelcontextprotocol/serverInfo", None)
                    if not meta:
                        del result["_meta"]
            seen = result.get("structuredContent")
            if isinstance(seen, dict) and "meta" in seen and "arguments" in seen:  # whoami
                for key in WHOAMI_HUBS_OWN:
                    seen.pop(key, None)
                meta = seen.get("meta")
                if isinstance(meta, dict) and "progressToken" in meta:  # documented: the hub's own token upstream
                    meta["progressToken"] = "<token>"
                result["content"] = ["<whoami>"]
        if via_hub and isinstance(error, dict):  # documented: an upstream error names its server
            error["message"] = str(error.get("message", "")).removeprefix("[srv] ")
        before = []
        for message in entry["before"]:
            message.pop("jsonrpc", None)
            if "method" in message and "id" in message:
                message["id"] = "<request>"  # the hub mints its own ids toward the client
            before.append(unlogged(message) if via_hub else message)
        entry["before"] = sorted(before, key=lambda m: orjson.dumps(m, option=orjson.OPT_SORT_KEYS))
        out.append(undo_prefixes(entry) if via_hub and prefixed else entry)
    return out


def differences(direct_side: list[Json], hub_side: list[Json]) -> list[str]:
    return [
        f"{a['step']}:\n  direct: {orjson.dumps(a).decode()}\n  hub:    {orjson.dumps(b).decode()}"
        for a, b in zip(direct_side, hub_side, strict=True)
        if a != b
    ]


ARGS = ["--page-size", "2", "--extra-fields", "--tools", "3"]


@pytest.mark.parametrize("era", ["legacy", "modern"])
@pytest.mark.parametrize("prefix_mode", ["conditional", "always"])
@pytest.mark.parametrize("args", [ARGS, ["--tools", "1"]], ids=["paged-extra", "plain"])
async def test_the_hub_shows_a_client_what_the_server_would(args: list[str], prefix_mode: str, era: str) -> None:
    steps = [(method, params) for method, params, legacy_only in SCRIPT if era == "legacy" or not legacy_only]
    if "--tools" in args and args[args.index("--tools") + 1] == "1":
        steps = [(m, p) for m, p in steps if p.get("name") != "tool_1"]
    seen_directly = await converse_direct(args, steps)
    async with inprocess_hub({"srv": fixture(*args)}, {"prefixMode": prefix_mode}) as hub:
        seen_through = await converse_hub(hub, era, steps, seen_directly, prefix_mode == "always")
    prefixed = prefix_mode == "always"
    found = differences(
        normalised(seen_directly, via_hub=False),
        normalised(seen_through, via_hub=True, prefixed=prefixed, modern=era == "modern"),
    )
    assert not found, "undocumented differences:\n" + "\n".join(found)
