"""Atheris fuzz target: the JSON-RPC parser, then the hub's HTTP endpoint in-process.

Not a pytest module (pytest collects test_*.py only). Run it by hand; see README.md here::

    .venv/bin/pip install atheris                  # not a project dependency
    .venv/bin/python tests/fuzz/fuzz_jsonrpc.py -max_total_time=60 corpus/

Each input: the first byte picks how the rest is sent, the rest is the body.

- `onemcp.protocol.jsonrpc.parse` must return a dict that `classify` accepts, or raise
  ParseError / InvalidRequest; anything else is a crash.
- Then the body goes to the real ASGI app (`OneMcpApp`, no upstreams, no sockets) as POST /mcp
  (2025-11-25 with a session, without one, with an unsupported version, or 2026-07-28 with
  matching Mcp-Method / Mcp-Name headers) or POST /messages. The answer must be a status the
  hub documents (never 5xx), a JSON-RPC body must be a well-formed error or result, and an
  error must not be -32603 (the hub's own fault) for something the client sent.

Inputs that hit bugs already pinned by strict-xfail tests in tests/downstream/test_hostile_http.py
are skipped (`known_bug`) unless ONEMCP_FUZZ_KNOWN=1. Without atheris, the file still imports; run
as a script it replays the files given as arguments (a corpus or crash inputs) or says it skipped.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import Awaitable, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson

try:
    import atheris
except ImportError:  # the target still imports (and replays files) without it
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["onemcp"]):
        from onemcp.app import OneMcpApp
        from onemcp.auth.access import SSE
        from onemcp.auth.principal import ANONYMOUS
        from onemcp.config.model import HubConfig
        from onemcp.protocol import jsonrpc
        from onemcp.protocol.errors import InvalidRequest, ParseError
else:
    from onemcp.app import OneMcpApp
    from onemcp.auth.access import SSE
    from onemcp.auth.principal import ANONYMOUS
    from onemcp.config.model import HubConfig
    from onemcp.protocol import jsonrpc
    from onemcp.protocol.errors import InvalidRequest, ParseError

T = TypeVar("T")
STATUSES = {200, 202, 400, 403, 404, 405, 406, 413, 415, 421}
MODES = ("parse-only", "legacy", "legacy-no-session", "bad-version", "modern", "messages")
MODERN = "2026-07-28"
PREFIX = "io.modelcontextprotocol/"
BASE = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"accept", b"application/json")]
CHECK_KNOWN = os.environ.get("ONEMCP_FUZZ_KNOWN") == "1"


class Hub:
    """One in-process app on one event loop, for every input."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = self.run(self._make())
        self.legacy = self._session(b"/mcp")
        access = self.app.hub.access(ANONYMOUS, SSE)  # as GET /sse would decide it on an open hub
        self.sse = self.app.hub.sessions.create("sse", access).id
        self.keep = {self.legacy, self.sse}
        # /messages answers requests in tasks of the app's task group (the lifespan's, normally):
        # a task that outlives each run_until_complete holds one open.
        ready = asyncio.Event()
        self.holder = self.loop.create_task(self._hold(ready))
        self.run(ready.wait())

    async def _hold(self, ready: asyncio.Event) -> None:
        async with anyio.create_task_group() as tg:
            self.app.legacy.tg = tg
            ready.set()
            await anyio.sleep_forever()

    def settle(self) -> list[jsonrpc.Message]:
        """Let /messages answers run, then what the SSE session's stream would carry."""
        self.run(anyio.wait_all_tasks_blocked())
        assert not self.holder.done(), self.holder  # an answer task failed and took the group down
        out: list[jsonrpc.Message] = []
        for sid in self.keep:
            session = self.app.hub.sessions.get(sid)
            assert session is not None and session.outbox is not None
            while True:
                try:
                    out.append(session.outbox.receive_nowait())
                except anyio.WouldBlock:
                    break
        return out

    async def _make(self) -> OneMcpApp:
        return OneMcpApp(HubConfig.model_validate({"mcpServers": {}, "onemcp": {"maxBodyBytes": 1 << 20}}))

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def _session(self, path: bytes) -> str:
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
        status, headers, _ = self.run(self.post(path, orjson.dumps(init), BASE))
        assert status == 200
        return headers[b"mcp-session-id"].decode()

    async def post(
        self, target: bytes, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        path, _, query = target.partition(b"?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path.decode(),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        sent = False
        out: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # (a handler waiting for a disconnect waits forever)
            raise AssertionError

        async def send(message: MutableMapping[str, Any]) -> None:
            out.append(message)

        await asyncio.wait_for(self.app(scope, receive, send), timeout=10)
        start = next(m for m in out if m["type"] == "http.response.start")
        data = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
        return start["status"], dict(start.get("headers", [])), data

    def prune(self) -> None:
        """Sessions made by fuzzed initialize requests never expire here (no hub task): drop them."""
        if len(self.app.hub.sessions) > 64:
            for session in self.app.hub.sessions:
                if session.id not in self.keep:
                    self.app.hub.sessions.remove(session.id)


HUB: Hub | None = None


def check_parse(body: bytes) -> jsonrpc.Message | None:
    try:
        msg = jsonrpc.parse(body)
    except (ParseError, InvalidRequest) as exc:
        assert exc.to_error()["code"] in (-32700, -32600)
        return None
    assert isinstance(msg, dict) and jsonrpc.classify(msg) in ("request", "notification", "response")
    return msg


def known_bug(msg: jsonrpc.Message | None) -> bool:
    """Inputs pinned by the strict-xfail tests in tests/downstream/test_hostile_http.py."""
    if msg is None or CHECK_KNOWN:
        return False
    try:
        str(msg.get("id"))
        orjson.dumps(msg.get("id"))
        orjson.dumps(msg.get("params"))
        repr(msg.get("params"))
    except (RecursionError, TypeError):
        return True  # deep response ids (HTTP 500), deep params (-32603)
    params = msg.get("params")
    return isinstance(params, dict) and isinstance(params.get("requestId"), list | dict)


def headers_for(mode: str, msg: jsonrpc.Message | None, hub: Hub) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    if mode == "messages":
        return b"/messages?session_id=" + hub.sse.encode(), BASE
    headers = list(BASE)
    if mode == "legacy":
        headers += [(b"mcp-session-id", hub.legacy.encode()), (b"mcp-protocol-version", b"2025-11-25")]
    elif mode == "bad-version":
        headers += [(b"mcp-session-id", hub.legacy.encode()), (b"mcp-protocol-version", b"1999-01-01")]
    elif mode == "modern":
        headers.append((b"mcp-protocol-version", MODERN.encode()))
        params = msg.get("params") if msg is not None else None
        for header, value in (
            (b"mcp-method", msg.get("method") if msg is not None else None),
            (b"mcp-name", params.get("name", params.get("uri")) if isinstance(params, dict) else None),
        ):
            if isinstance(value, str):
                encoded = value.encode("utf-8", "surrogatepass")
                plain = value.isascii() and value == value.strip() and "\r" not in value and "\n" not in value
                headers.append((header, encoded if plain else b"=?base64?" + base64.b64encode(encoded) + b"?="))
    return b"/mcp", headers


def check_reply(status: int, headers: dict[bytes, bytes], data: bytes, msg: jsonrpc.Message | None) -> None:
    assert status in STATUSES, (status, data[:300])
    assert b"Traceback (most recent call last)" not in data
    if not headers.get(b"content-type", b"").startswith(b"application/json") or not data:
        return
    doc = orjson.loads(data)
    if not (isinstance(doc, dict) and "jsonrpc" in doc):
        return
    check_rpc(doc, msg)


def check_rpc(doc: Any, msg: jsonrpc.Message | None) -> None:
    assert isinstance(doc, dict) and doc.get("jsonrpc") == "2.0", doc
    if "method" in doc:
        return  # a notification the hub sends on its own
    assert ("result" in doc) != ("error" in doc), doc
    if "error" in doc:
        err = doc["error"]
        assert isinstance(err, dict) and type(err.get("code")) is int and isinstance(err.get("message"), str)
        assert err["code"] != -32603, f"an internal error for client input: {doc}"
    else:
        assert msg is not None and jsonrpc.classify(msg) == "request" and doc.get("id") == msg["id"], doc


def one_input(data: bytes) -> None:
    global HUB
    if not data:
        return
    mode, body = MODES[data[0] % len(MODES)], data[1:]
    msg = check_parse(body)
    if mode == "parse-only" or known_bug(msg):
        return
    if HUB is None:
        HUB = Hub()
    target, headers = headers_for(mode, msg, HUB)
    check_reply(*HUB.run(HUB.post(target, body, headers)), msg)
    for queued in HUB.settle():  # (replies to /messages requests, notifications)
        check_rpc(orjson.loads(jsonrpc.dumps(queued)), msg)
    HUB.prune()


SEEDS: list[dict[str, Any]] = [
    {"jsonrpc": "2.0", "id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": "a", "method": "tools/list"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "x", "arguments": {"a": [1, {}]}}},
    {"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "x://y"}},
    {"jsonrpc": "2.0", "id": 4, "method": "completion/complete", "params": {"ref": {"type": "ref/prompt"}}},
    {"jsonrpc": "2.0", "id": 5, "method": "logging/setLevel", "params": {"level": "info"}},
    {"jsonrpc": "2.0", "id": 6, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
    {"jsonrpc": "2.0", "id": 7, "result": {}},
    {"jsonrpc": "2.0", "id": 8, "error": {"code": -1, "message": "m"}},
    {"jsonrpc": "2.0", "id": 9, "method": "tasks/get", "params": {"taskId": "t"}},
    {
        "jsonrpc": "2.0",
        "id": 10,
        "method": "tools/call",
        "params": {"name": "x", "_meta": {f"{PREFIX}protocolVersion": MODERN, f"{PREFIX}clientCapabilities": {}}},
    },
]


def write_seeds(directory: Path) -> None:
    """A starting corpus: each seed message under every mode byte."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {f"{PREFIX}protocolVersion": MODERN, f"{PREFIX}clientCapabilities": {}}
    for i, seed in enumerate(SEEDS):
        for mode, name in enumerate(MODES):
            if name == "modern" and "method" in seed:
                params = seed.get("params", {})
                seed = {**seed, "params": {**params, "_meta": {**params.get("_meta", {}), **meta}}}
            (directory / f"seed-{i}-{name}").write_bytes(bytes([mode]) + orjson.dumps(seed))


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--write-seeds":
        write_seeds(Path(argv[2]))
        return 0
    if atheris is not None:
        atheris.Setup(argv, one_input)
        atheris.Fuzz()
        return 0
    files = [Path(a) for a in argv[1:] if not a.startswith("-")]
    if not files:
        print("atheris is not installed: fuzzing skipped (pip install atheris; see tests/fuzz/README.md)")
        return 0
    inputs = [i for p in files for i in (sorted(p.iterdir()) if p.is_dir() else [p])]
    for item in inputs:
        one_input(item.read_bytes())
    print(f"replayed {len(inputs)} input(s) without atheris: no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
