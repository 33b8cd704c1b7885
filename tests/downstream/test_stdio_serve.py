"""`onemcp serve --transport stdio`: the hub for one client on stdin/stdout, driven by the SDK's stdio client.

Both eras: a legacy client (`mode="legacy"`, the handshake) and a 2026-07-28 one (`mode="2026-07-28"`:
`server/discover`, then every request with its own `_meta` envelope) on the same entry.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp.auth.principal import ANONYMOUS
from onemcp.downstream import stdio as stdio_module
from onemcp.downstream.stdio import StdioServer
from support.hub_process import clean_env
from support.inprocess import fixture, inprocess_hub, tool_call
from support.lines import Lines
from support.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]
DEADLINE = 60.0
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
MODERN_FIXTURE = str(Path(__file__).resolve().parents[1] / "fixtures" / "modern_server.py")
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
SERVER_INFO = "io.modelcontextprotocol/serverInfo"


def servers() -> dict[str, Any]:
    cmd = fixture_command()
    return {
        "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"]},
        "fx": {"command": cmd[0], "args": cmd[1:]},
    }


def write_config(directory: Path, entries: dict[str, Any]) -> Path:
    path = directory / "mcp.json"
    path.write_text(json.dumps({"mcpServers": entries}))
    return path


def hub_argv(config: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "onemcp", "serve", "--transport", "stdio", "--config", str(config), *flags]


@asynccontextmanager
async def stdio_hub(config: Path, *flags: str, mode: str = "legacy", **options: Any) -> AsyncIterator[Client]:
    argv = hub_argv(config, *flags)
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=clean_env(config.parent))
    async with Client(params, mode=mode, cache=None, **options) as client:
        yield client


async def test_lists_are_complete_from_the_first_request_and_calls_work(tmp_path: Path) -> None:
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(write_config(tmp_path, servers())) as c:
            assert c.server_info is not None and c.server_info.name == "onemcp"
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"demo__echo", "demo__add", "fx__echo", "fx__progress"} <= names
            assert text_of(await c.call_tool("demo__echo", {"text": "over stdio"})) == "over stdio"
            with pytest.raises(MCPError) as err:
                await c.call_tool("nope__x", {})
            assert "Tool not found: nope__x" in err.value.error.message


async def test_requests_run_concurrently(tmp_path: Path) -> None:
    """A slow call does not hold up the next one (each request is its own task)."""
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(write_config(tmp_path, servers())) as c:
            results: list[str] = []

            async def slow() -> None:
                results.append(text_of(await c.call_tool("fx__sleep", {"seconds": 30})))

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                results.append(text_of(await c.call_tool("demo__echo", {"text": "quick"})))
                tg.cancel_scope.cancel()  # the slow one is not waited for
            assert results == ["quick"]


async def test_progress_and_server_requests_reach_the_client(tmp_path: Path) -> None:
    seen: list[float] = []
    all_three = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)
        if len(seen) == 3:
            all_three.set()

    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled!"), model="test-model"
        )

    with anyio.fail_after(DEADLINE):
        async with stdio_hub(write_config(tmp_path, servers()), sampling_callback=sampling) as c:
            await c.call_tool("fx__progress", {"steps": 3}, progress_callback=on_progress)
            await all_three.wait()
            assert seen == [1.0, 2.0, 3.0]
            assert "sampled!" in text_of(await c.call_tool("fx__sample", {"prompt": "hi"}))


async def test_config_change_sends_list_changed_from_the_outbox(tmp_path: Path) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    config = write_config(tmp_path, {"demo": servers()["demo"]})
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(config, message_handler=on_message) as c:
            assert {t.name for t in (await c.list_tools()).tools} == {"echo", "add", "word_count"}
            write_config(tmp_path, servers())  # the hub watches its config in stdio mode too
            while True:
                await changed.wait()
                names = {t.name for t in (await c.list_tools()).tools}
                if "fx__echo" in names:
                    break
                changed = anyio.Event()
            assert "demo__echo" in names


async def test_stdout_carries_only_json_rpc_and_eof_ends_the_process(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"demo": servers()["demo"]})
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
         "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}},
    ]  # fmt: skip
    payload = "".join(json.dumps(line) + "\n" for line in lines) + "not json\n"
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process(
            [sys.executable, "-m", "onemcp", "serve", "--transport", "stdio", "--config", str(config)],
            input=payload.encode(),
            env=clean_env(tmp_path),
            check=False,
            stderr=subprocess.PIPE,
        )
    assert done.returncode == 0
    replies = [json.loads(line) for line in done.stdout.decode().splitlines()]  # every line is JSON
    by_id = {r.get("id"): r for r in replies}
    assert by_id[1]["result"]["protocolVersion"] == "2025-06-18"
    assert by_id[2]["result"]["content"] == [{"type": "text", "text": "x"}]
    assert by_id[None]["error"]["code"] == -32700
    assert b"on stdio" in done.stderr


async def test_a_line_over_the_body_limit_is_refused_without_being_held(tmp_path: Path) -> None:
    """A message is held at most `maxBodyBytes` (its rest is read and dropped): one of 400 MB without
    a newline had grown the hub to 859 MB. It is refused under its id when its head gives one (else id
    null). The next message is answered as usual."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"demo": servers()["demo"]}, "onemcp": {"maxBodyBytes": 65536}}))
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}  # fmt: skip
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    huge = b'{"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"x": "' + b"a" * 3_000_000 + b'"}}\n'
    id_last = b'{"method": "ping", "params": {"x": "' + b"a" * 100_000 + b'"}, "jsonrpc": "2.0", "id": 8}\n'
    payload = json.dumps(init).encode() + b"\n" + huge + id_last + json.dumps(ping).encode() + b"\n"
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process(
            hub_argv(path), input=payload, env=clean_env(tmp_path), check=False, stderr=subprocess.DEVNULL
        )
    assert done.returncode == 0
    replies = [json.loads(line) for line in done.stdout.decode().splitlines()]
    refused = [r for r in replies if r.get("id") in (9, None)]
    assert [r.get("id") for r in refused] == [9, None]  # the id after the cut is not known
    assert all(r["error"]["code"] == -32600 and "at most 65536" in r["error"]["message"] for r in refused)
    assert len(replies) == 4 and {r.get("id") for r in replies} == {1, 9, None, 2}


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_a_call_too_long_to_read_is_answered_under_its_id_not_left_waiting(tmp_path: Path, mode: str) -> None:
    """A search_tools call of 100 KB (a 1 MB query is refused by search_tools itself) over a 64 KiB
    limit: the SDK client gets the refusal for that call; it had waited forever for an answer (id null)."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"fx": servers()["fx"]}, "onemcp": {"maxBodyBytes": 65536}}))
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(path, "--exposure", "search", mode=mode) as c:
            with pytest.raises(MCPError) as refused:
                await c.call_tool("search_tools", {"query": "x" * 100_000})
            assert "at most 65536" in refused.value.error.message
            found = await c.call_tool("search_tools", {"query": "echo a message"})  # the session goes on
            assert "echo(" in text_of(found)


async def test_bad_config_exits_2_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"x": {"url": "ftp://nope"}}}))
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process(
            [sys.executable, "-m", "onemcp", "serve", "--transport", "stdio", "--config", str(path)],
            input=b"",
            env=clean_env(tmp_path),
            check=False,
        )
    assert done.returncode == 2 and done.stdout == b""
    assert b"must start with http:// or https://" in done.stderr


async def test_flags_choose_the_stdio_clients_view_and_exposure(tmp_path: Path) -> None:
    """What /mcp?tags=, ?preset= and ?exposure= choose over HTTP, the serve flags choose for stdio."""
    entries = servers()
    entries["demo"]["tags"] = ["web"]
    path = write_config(tmp_path, entries)
    (tmp_path / "presets.json").write_text(json.dumps({"presets": {"only-fx": {"filter": "!web"}}}))
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(path, "--tags", "web") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "demo__echo" in names and not any(n.startswith("fx__") for n in names), names
            with pytest.raises(MCPError):
                await c.call_tool("fx__echo", {"message": "out of view"})
        async with stdio_hub(path, "--exposure", "search", "--tags", "web") as c:
            assert sorted(t.name for t in (await c.list_tools()).tools) == [
                "call_tool",
                "get_tool_schema",
                "search_tools",
            ]
            found = text_of(await c.call_tool("search_tools", {"query": "echo a message back", "limit": 20}))
            assert "demo__echo(" in found and "fx__" not in found, found
            assert text_of(await c.call_tool("demo__echo", {"text": "by name"})) == "by name"
        async with stdio_hub(path, "--preset", "only-fx") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "fx__echo" in names and not any(n.startswith("demo__") for n in names), names


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--preset", "nope"], b"nope"),
        (["--tags", ""], b"tags"),
        (["--exposure", "everything"], b"invalid choice"),
        (["--tags", "a", "--preset", "p"], b"not allowed with"),
        (["--transport", "http", "--tags", "web"], b"--tags is for --transport stdio"),
    ],
)
async def test_a_bad_or_misplaced_view_flag_is_refused(tmp_path: Path, flags: list[str], complaint: bytes) -> None:
    path = write_config(tmp_path, servers())
    transport = [] if "--transport" in flags else ["--transport", "stdio"]
    with anyio.fail_after(DEADLINE):
        done = await anyio.run_process(
            [sys.executable, "-m", "onemcp", "serve", *transport, "--config", str(path), *flags],
            input=b"",
            env=clean_env(tmp_path),
            check=False,
        )
    assert done.returncode == 2 and done.stdout == b"", done
    assert complaint in done.stderr, done.stderr


# ------------------------------------------------------------------ a view chooses the servers that run


def pid_noted(entry: dict[str, Any], pidfile: Path, **extra: Any) -> dict[str, Any]:
    """`entry` run so that its process writes its pid to `pidfile` first: proof that it was started."""
    note = (  # renamed into place: a reader never sees the file half-written
        "import os, sys; open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); "
        "os.replace(sys.argv[1] + '.tmp', sys.argv[1]); os.execv(sys.argv[2], sys.argv[2:])"
    )
    return {"command": sys.executable, "args": ["-c", note, str(pidfile), entry["command"], *entry["args"]], **extra}


def started(pidfile: Path) -> int | None:
    """The pid of the process started with `pidfile`, while it runs; None once it has ended (or never ran)."""
    from onemcp.config.runtime import alive

    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    return pid if alive(pid) else None


async def until(condition: Callable[[], bool]) -> None:
    """Poll `condition` (the caller's deadline bounds it)."""
    while not condition():
        await anyio.sleep(0.05)  # allowed-sleep: polling, within the caller's deadline


async def test_a_stdio_hub_with_a_view_starts_no_server_outside_it(tmp_path: Path) -> None:
    """`serve --transport stdio --tags web` started every configured server: one outside the view, whose
    command fails, was started (and logged its failure) though the client could never reach it."""
    marker = tmp_path / "started"
    broken = {"command": sys.executable, "args": ["-c", f"open({str(marker)!r}, 'w'); raise SystemExit(3)"]}
    path = write_config(tmp_path, {"demo": {**servers()["demo"], "tags": ["web"]}, "broken": broken})
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(path, "--tags", "web") as c:  # the first list waits until every started one was tried
            assert {t.name for t in (await c.list_tools()).tools} == {"demo__echo", "demo__add", "demo__word_count"}
        done = await anyio.run_process(hub_argv(path, "--tags", "web"), input=b"", env=clean_env(tmp_path), check=False)
    assert not marker.exists()
    assert b"serving 1 of 2 server(s)" in done.stderr and b"broken" not in done.stderr, done.stderr


async def test_a_reload_starts_a_server_tagged_into_the_view_and_stops_one_tagged_out(tmp_path: Path) -> None:
    pidfile = tmp_path / "fx.pid"
    entries = {"demo": {**servers()["demo"], "tags": ["web"]}, "fx": pid_noted(servers()["fx"], pidfile, tags=["db"])}
    path = write_config(tmp_path, entries)
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async def tools(c: Client) -> set[str]:
        return {t.name for t in (await c.list_tools()).tools}

    with anyio.fail_after(DEADLINE):
        async with stdio_hub(path, "--tags", "web", message_handler=on_message) as c:
            assert not any(name.startswith("fx__") for name in await tools(c)) and started(pidfile) is None
            write_config(tmp_path, {**entries, "fx": {**entries["fx"], "tags": ["db", "web"]}})
            while "fx__echo" not in await tools(c):
                await changed.wait()
                changed = anyio.Event()
            pid = started(pidfile)
            assert pid is not None
            write_config(tmp_path, entries)  # tagged out again: it stops, not only leaves the lists
            await until(lambda: started(pidfile) is None)
            assert not any(name.startswith("fx__") for name in await tools(c))
            assert "demo__echo" in await tools(c)


async def test_a_preset_edited_on_disk_changes_the_servers_a_stdio_hub_runs(tmp_path: Path) -> None:
    demo_pid, fx_pid = tmp_path / "demo.pid", tmp_path / "fx.pid"
    entries = {
        "demo": pid_noted(servers()["demo"], demo_pid, tags=["web"]),
        "fx": pid_noted(servers()["fx"], fx_pid, tags=["db"]),
    }
    path = write_config(tmp_path, entries)
    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"presets": {"mine": {"filter": "web"}}}))
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(path, "--preset", "mine") as c:
            assert "demo__echo" in {t.name for t in (await c.list_tools()).tools}
            assert started(demo_pid) is not None and started(fx_pid) is None
            presets.write_text(json.dumps({"presets": {"mine": {"filter": "db"}}}))
            await until(lambda: started(fx_pid) is not None and started(demo_pid) is None)
            while "fx__echo" not in (names := {t.name for t in (await c.list_tools()).tools}):
                await anyio.sleep(0.05)  # allowed-sleep: polling within fail_after; its lists come once it is ready
            assert not any(name.startswith("demo__") for name in names), names


# ------------------------------------------------------------------ the 2026-07-28 era on the same entry


async def elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"colour": "teal"})


async def sample(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="word"), model="m")


@pytest.mark.parametrize("mode", [MODERN, "auto"])
async def test_a_2026_client_discovers_lists_and_calls_tools(tmp_path: Path, mode: str) -> None:
    """`auto` probes server/discover and stays in the 2026-07-28 era; a pinned client asks it itself."""
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(write_config(tmp_path, servers()), mode=mode) as c:
            assert c.protocol_version == MODERN
            discovered = types.DiscoverResult.model_validate(await c.session.send_discover(MODERN))
            assert MODERN in discovered.supported_versions and discovered.capabilities.tools is not None
            assert discovered.meta is not None and discovered.meta[SERVER_INFO]["name"] == "onemcp"
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"demo__echo", "demo__add", "fx__echo", "fx__progress"} <= names
            result = await c.call_tool("demo__echo", {"text": "modern over stdio"})
            assert text_of(result) == "modern over stdio" and not result.is_error
            failed = await c.call_tool("fx__fail", {})
            assert failed.is_error and text_of(failed) == "failed on purpose"
            with pytest.raises(MCPError) as err:
                await c.call_tool("nope__x", {})
            assert "Tool not found: nope__x" in err.value.error.message


async def test_a_2026_clients_progress_arrives_before_its_reply(tmp_path: Path) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with anyio.fail_after(DEADLINE):
        async with stdio_hub(write_config(tmp_path, servers()), mode=MODERN) as c:
            result = await c.call_tool("fx__progress", {"steps": 3}, progress_callback=on_progress)
            assert text_of(result) == "progress done"
            assert seen == [1.0, 2.0, 3.0]  # request-scoped, written before the reply


async def test_a_2026_client_cancelling_a_call_cancels_it_upstream(tmp_path: Path) -> None:
    """The era's cancellation on stdio is `notifications/cancelled`: the upstream call is cancelled too."""
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(write_config(tmp_path, servers()), mode=MODERN) as c:

            async def running() -> str:
                return text_of(await c.call_tool("fx__running", {}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(c.call_tool, "fx__sleep", {"seconds": 3600})  # outlives the test unless cancelled
                while await running() != "1":  # the call reached the upstream
                    pass
                tg.cancel_scope.cancel()  # the SDK client sends notifications/cancelled
            while await running() != "0":
                pass


async def test_a_legacy_upstream_asks_a_2026_client_through_input_required(tmp_path: Path) -> None:
    """The legacy upstream's live requests become input_required results; the SDK client answers them
    with its callbacks and retries, and the parked upstream call finishes."""
    entries = {**servers(), "m": {"command": sys.executable, "args": [MODERN_FIXTURE], "protocol": "legacy"}}
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(
            write_config(tmp_path, entries), mode=MODERN, elicitation_callback=elicit, sampling_callback=sample
        ) as c:
            assert "word" in text_of(await c.call_tool("fx__sample", {"prompt": "hi"}))
            elicited = json.loads(text_of(await c.call_tool("fx__elicit", {})))
            assert elicited == {"action": "accept", "content": {"colour": "teal"}}
            colour = json.loads(text_of(await c.call_tool("m__ask_colour", {})))
            assert colour["content"] == {"colour": "teal"}


async def test_a_dual_era_upstream_passes_input_required_through_to_a_2026_client(tmp_path: Path) -> None:
    entries = {"m": {"command": sys.executable, "args": [MODERN_FIXTURE]}}
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(
            write_config(tmp_path, entries), mode=MODERN, elicitation_callback=elicit, sampling_callback=sample
        ) as c:
            assert {"echo", "ask_colour", "ask_sample"} <= {t.name for t in (await c.list_tools()).tools}
            assert json.loads(text_of(await c.call_tool("echo", {"x": [1, 2]}))) == {"x": [1, 2]}
            colour = json.loads(text_of(await c.call_tool("ask_colour", {})))
            assert colour == {"action": "accept", "content": {"colour": "teal"}}
            sampled = json.loads(text_of(await c.call_tool("ask_sample", {})))
            assert sampled["content"]["text"] == "word"


async def test_a_2026_clients_listen_feed_carries_list_changed(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"demo": servers()["demo"]})
    with anyio.fail_after(DEADLINE):
        async with stdio_hub(config, mode=MODERN) as c:
            async with c.listen(tools_list_changed=True) as feed:
                write_config(tmp_path, servers())  # the hub watches its config in stdio mode too
                async for event in feed:
                    assert type(event).__name__ == "ToolsListChanged"
                    if "fx__echo" in {t.name for t in (await c.list_tools()).tools}:
                        break
                else:
                    raise AssertionError("the feed ended before the new tools were listed")
            # the feed was cancelled; the entry goes on serving
            assert text_of(await c.call_tool("demo__echo", {"text": "after"})) == "after"


async def test_both_eras_on_one_stdio_hub_message_by_message(tmp_path: Path) -> None:
    """A raw client: legacy and 2026-07-28 requests interleaved, the modern one's shape and refusals,
    and a cancelled modern call that is never answered."""
    config = write_config(tmp_path, servers())
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "demo__echo", "arguments": {"text": "m"}, "_meta": ENVELOPE}},
        {"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
         "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "demo__echo", "arguments": {"text": "l"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "ping", "params": {"_meta": ENVELOPE}},
        {"jsonrpc": "2.0", "id": 5, "method": "logging/setLevel", "params": {"level": "info", "_meta": ENVELOPE}},
        {"jsonrpc": "2.0", "id": 6, "method": "resources/subscribe", "params": {"uri": "x://y", "_meta": ENVELOPE}},
        {"jsonrpc": "2.0", "id": 7, "method": "tools/list",
         "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}}},
        {"jsonrpc": "2.0", "id": 8, "method": "tools/call",
         "params": {"name": "fx__sleep", "arguments": {"seconds": 30}, "_meta": ENVELOPE}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 8}},
        {"jsonrpc": "2.0", "id": 9, "method": "ping"},
    ]  # fmt: skip
    replies: dict[Any, dict[str, Any]] = {}
    buffered = b""

    def take(chunk: bytes) -> None:
        nonlocal buffered
        *complete, buffered = (buffered + chunk).split(b"\n")
        for raw in complete:
            reply = json.loads(raw)  # stdout carries nothing but JSON-RPC
            replies[reply.get("id")] = reply

    with anyio.fail_after(DEADLINE):
        async with await anyio.open_process(
            hub_argv(config), env=clean_env(tmp_path), stderr=subprocess.DEVNULL
        ) as hub:
            assert hub.stdin is not None and hub.stdout is not None
            await hub.stdin.send("".join(json.dumps(line) + "\n" for line in lines).encode())
            while not {1, 2, 3, 4, 5, 6, 7, 9} <= replies.keys():
                take(await hub.stdout.receive())
            await hub.stdin.aclose()  # end of input: the process ends
            async for chunk in hub.stdout:
                take(chunk)
            assert await hub.wait() == 0
    modern = replies[1]["result"]
    assert modern["content"] == [{"type": "text", "text": "m"}]
    assert modern["resultType"] == "complete" and modern["_meta"][SERVER_INFO]["name"] == "onemcp"
    assert replies[2]["result"]["protocolVersion"] == "2025-06-18"
    assert replies[3]["result"] == {"content": [{"type": "text", "text": "l"}]}  # legacy: as it was
    for rid, method in ((4, "ping"), (5, "logging/setLevel"), (6, "resources/subscribe")):
        assert replies[rid]["error"] == {"code": -32601, "message": f"Method not found: {method}"}
    assert replies[7]["error"]["code"] == -32602 and "clientCapabilities" in replies[7]["error"]["message"]
    assert 8 not in replies  # cancelled: never answered
    assert replies[9]["result"] == {}


async def test_a_token_for_a_resource_needs_the_hubs_url_on_stdio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JWT or OAuth token names the resource it is for; a hub on stdio has no URL to compare it
    with, so without publicUrl (or jwt.audience) it is refused, never checked against a guess."""
    from onemcp.cli.client.rpc import TOKEN_ENV
    from onemcp.cli.serve import stdio_principal
    from onemcp.config.model import HubConfig

    jwt = {"issuer": "https://idp.example", "jwksUrl": "https://idp.example/jwks.json"}
    config = HubConfig.model_validate({"onemcp": {"auth": {"apiKeys": True, "jwt": jwt}}})
    monkeypatch.setenv(TOKEN_ENV, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    said = await stdio_principal(config, tmp_path / "mcp.json")
    assert isinstance(said, str) and "set onemcp.auth.publicUrl" in said
    monkeypatch.setenv(TOKEN_ENV, "omk_abcdef012345_notakey")  # an API key is the hub's own: checked as ever
    said = await stdio_principal(config, tmp_path / "mcp.json")
    assert isinstance(said, str) and "publicUrl" not in said and "refused" in said


@pytest.mark.parametrize("command", ["serve", "proxy"])
async def test_ctrl_c_ends_a_stdio_command_whose_client_keeps_stdin_open(tmp_path: Path, command: str) -> None:
    """SIGINT with stdin still open (a terminal): the process ends, 130, without waiting for a line
    (a reader blocked on stdin held the interpreter's exit until the client wrote or closed it)."""
    import signal

    from support.hub import running_hub

    path = tmp_path / "mcp.json"
    config = {"mcpServers": {"demo": servers()["demo"]}}
    path.write_text(json.dumps(config))
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}  # fmt: skip
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub:
            argv = hub_argv(path) if command == "serve" else [sys.executable, "-m", "onemcp", "proxy", "--url", hub.url]
            process = await anyio.open_process(argv, env=clean_env(tmp_path), stderr=subprocess.DEVNULL)
            try:
                assert process.stdin is not None and process.stdout is not None
                await process.stdin.send((json.dumps(init) + "\n").encode())  # started: it answers
                assert b'"id":1' in (await process.stdout.receive()).replace(b" ", b"")
                process.send_signal(signal.SIGINT)
                assert await process.wait() == 130
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("command", ["serve", "proxy"])
async def test_sigterm_ends_a_stdio_command_as_end_of_input_does(tmp_path: Path, command: str, signame: str) -> None:
    """SIGTERM, how a client ends a stdio server: the call in flight is still answered, then the upstreams
    are closed (the stdio hub's: its wrapper records that the server ended by itself, not killed) or the
    hub session is ended (the proxy's). It killed both at once: no answer, upstreams SIGKILLed.
    SIGHUP (a closing terminal) the same: the stdio hub's config reloader took it, and it ran on (hunt-ops F6)."""
    import shlex
    import signal
    from contextlib import AsyncExitStack

    from support.hub import running_hub

    marker = tmp_path / "ended"
    fx = " ".join(shlex.quote(part) for part in fixture_command())
    wrapped = {"command": "sh", "args": ["-c", f'{fx}; echo "ended $?" > {shlex.quote(str(marker))}']}
    config = {"mcpServers": {"fx": wrapped}}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config))
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}  # fmt: skip
    # (the one server's tools are not prefixed)
    slow = {"name": "progress", "arguments": {"steps": 2, "pause": 1}, "_meta": {"progressToken": "p"}}
    lines = [init, {"jsonrpc": "2.0", "method": "notifications/initialized"},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": slow}]  # fmt: skip
    seen: list[dict[str, Any]] = []
    buffered = b""
    signalled = False
    code: int | None = None
    with anyio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            argv = hub_argv(path)
            if command == "proxy":
                hub = await stack.enter_async_context(running_hub(config))
                argv = [sys.executable, "-m", "onemcp", "proxy", "--url", hub.url]
            process = await anyio.open_process(argv, env=clean_env(tmp_path), stderr=subprocess.DEVNULL)
            try:
                assert process.stdin is not None and process.stdout is not None
                await process.stdin.send("".join(json.dumps(line) + "\n" for line in lines).encode())
                async for chunk in process.stdout:
                    *complete, buffered = (buffered + chunk).split(b"\n")
                    seen.extend(json.loads(raw) for raw in complete)
                    if not signalled and any(m.get("method") == "notifications/progress" for m in seen):
                        process.send_signal(getattr(signal, signame))  # the call has reached the upstream: in flight
                        signalled = True
                code = await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                await process.aclose()
            replies = {m.get("id"): m for m in seen if "id" in m}
            assert replies.get(2, {}).get("result", {}).get("content") == [{"type": "text", "text": "progress done"}]
            if command == "proxy":
                assert len(hub.app.hub.sessions) == 0  # the proxy ended its session on the way out
    if command == "serve":
        assert marker.exists() and marker.read_text().strip() == "ended 0"  # closed by EOF (SIGKILL: no marker)
    assert code == 128 + getattr(signal, signame)  # as a shell reports it


async def test_a_call_still_running_when_the_drain_ends_is_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """hunt-ops F4: stdin closed (or SIGTERM) with a call running past the drain: it was cancelled, and the
    client never got a reply for it."""
    monkeypatch.setattr(stdio_module, "DRAIN", 0.0)  # the drain is over at once
    pipe = Lines(8)
    send, lines = pipe.send, pipe.lines

    with anyio.fail_after(DEADLINE), pipe:
        async with inprocess_hub({"slow": fixture()}) as hub:
            server = StdioServer(hub.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                await send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": LEGACY}})
                await send({"jsonrpc": "2.0", "method": "notifications/initialized"})
                await send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": tool_call("hold")})
                conn = hub.app.hub.pool.get("slow")
                while (conn is None or conn.in_flight == 0) and not lines[1:]:
                    await anyio.sleep(0.01)  # allowed-sleep: polling with a deadline
                    conn = hub.app.hub.pool.get("slow")
                pipe.close()  # end of input
    error = {"code": -32000, "message": "[slow] the hub is shutting down"}
    assert [line for line in lines if line.get("id") == 2] == [{"jsonrpc": "2.0", "id": 2, "error": error}]


async def test_requests_past_the_cap_in_flight_are_refused_at_once_in_both_eras(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hunt B (limits): every request read from stdin became a task, without bound (an /sse session has 256):
    20,000 slow calls written at once grew the hub from 50 to 253 MB. Past MAX_CALLS in flight a request is
    refused at once, -32000 with data.limit, and once replies come the client is served again."""
    monkeypatch.setattr(stdio_module, "MAX_CALLS", 3)
    pipe = Lines()
    send, replies = pipe.send, pipe.replies

    async def until_replied(*rids: object) -> None:
        await pipe.until(lambda: all(replies(rid) for rid in rids))

    def legacy(rid: int, tool: str, **arguments: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": tool_call(tool, **arguments)}

    def modern(rid: int, tool: str) -> dict[str, Any]:
        return {**legacy(rid, tool, message="x"), "params": {**tool_call(tool, message="x"), "_meta": ENVELOPE}}

    with anyio.fail_after(DEADLINE), pipe:
        async with inprocess_hub({"slow": fixture()}) as hub:
            server = StdioServer(hub.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                await send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": LEGACY}})
                await send({"jsonrpc": "2.0", "method": "notifications/initialized"})
                await send(legacy(2, "hold"))
                await send(modern(3, "hold"))
                await send(legacy(4, "hold"))
                await send(legacy(5, "echo", message="x"))
                await send(modern(6, "echo"))
                await until_replied(5, 6)
                for rid in (5, 6):
                    [refused] = replies(rid)
                    assert refused["error"]["code"] == -32000 and refused["error"]["data"] == {
                        "limit": "calls_per_session"
                    }
                    assert "too many requests in flight" in refused["error"]["message"]
                assert not replies(2) and not replies(3) and not replies(4)  # still held, not refused
                hub.upstreams.let_go.set()
                await until_replied(2, 3, 4)
                await send(legacy(7, "echo", message="x"))
                await until_replied(7)
                assert text_of(types.CallToolResult.model_validate(replies(7)[0]["result"])) == "x"
                pipe.close()


@pytest.mark.parametrize("announcer", ["prompt", "slow"])
async def test_a_list_changed_a_call_caused_reaches_the_client_before_the_calls_reply(announcer: str) -> None:
    """The server says tools/list_changed, then answers: over its own stdout a client gets them in that
    order, and through the hub's one stream too (s33 e F2: the reply came first). The hub writes its
    reply after what it queued for the session before it; and when the announcing is slow (`before`:
    counting tokens off the event loop), the reply waits for it."""
    pipe = Lines(8)
    send = pipe.send

    with anyio.fail_after(DEADLINE), pipe:
        async with inprocess_hub({"fx": fixture()}) as hub:
            announcements = hub.app.hub.announcements
            if announcer == "slow" and (before := announcements.before) is not None:

                async def slow(sessions: Any) -> None:
                    for _ in range(100):  # the reply's task would run meanwhile, and write first
                        await anyio.lowlevel.checkpoint()
                    await before(sessions)

                announcements.before = slow
            server = StdioServer(hub.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                await send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": LEGACY}})
                await send({"jsonrpc": "2.0", "method": "notifications/initialized"})
                add = tool_call("add_tool", name="new")
                await send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": add})
                await pipe.until(lambda: bool(pipe.replies(2)))
                pipe.close()
    said = [line.get("method") or f"reply {line.get('id')}" for line in pipe.lines if line.get("id") != 1]
    assert said == ["notifications/tools/list_changed", "reply 2"]


async def test_a_modern_request_refused_before_routing_is_counted_as_the_hub_s_error() -> None:
    """onemcp_answered_errors_total over stdio, 2026-07-28: an unknown method and a legacy-only one are
    the hub's -32601, counted as a 2025-11-25 request's are (they were not counted)."""
    pipe = Lines()
    with anyio.fail_after(DEADLINE), pipe:
        async with inprocess_hub({"alpha": fixture()}) as hub:
            server = StdioServer(hub.app.hub, ANONYMOUS, pipe.read_line, pipe.write)
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                for rid, method in ((1, "nosuch/method"), (2, "logging/setLevel")):
                    params = {"level": "debug", "_meta": ENVELOPE}
                    await pipe.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
                await pipe.until(lambda: bool(pipe.replies(1) and pipe.replies(2)))
                pipe.close()
            text = hub.app.hub.metrics.render().decode()
    assert [pipe.replies(rid)[0]["error"]["code"] for rid in (1, 2)] == [-32601, -32601]
    assert 'onemcp_answered_errors_total{code="-32601",method="other"} 1.0' in text
    assert 'onemcp_answered_errors_total{code="-32601",method="logging/setLevel"} 1.0' in text
