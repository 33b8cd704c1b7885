"""Living configuration under load: edits apply without failing calls to untouched servers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from fixtures.launch import fixture_command
from onemcp import reload as reload_module
from onemcp.config import files
from onemcp.config.load import load_config
from onemcp.reload import Reloader
from onemcp.upstream.transports.stdio import StdioTransport
from support.hub import HEADERS, INIT, RunningHub, running_hub

pytestmark = pytest.mark.anyio
DEADLINE = 60.0


def stdio(*args: str, **extra: Any) -> dict[str, Any]:
    cmd = fixture_command(*args)
    return {"command": cmd[0], "args": cmd[1:], **extra}


def write(path: Path, servers: dict[str, Any], **settings: Any) -> dict[str, Any]:
    doc = {"mcpServers": servers, "onemcp": settings}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)  # how editors and `onemcp mcp` write it
    return doc


async def tool_names(c: Client) -> set[str]:
    return {t.name for t in (await c.list_tools()).tools}


async def until(predicate: Any) -> None:
    while not await predicate():
        await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline


class Load:
    """Calls to one server in a loop from its own client, counting outcomes."""

    def __init__(self, hub: RunningHub, tool: str) -> None:
        self.hub, self.tool = hub, tool
        self.ok = 0
        self.failed: list[str] = []
        self.stop = anyio.Event()

    async def run(self) -> None:
        async with Client(self.hub.url, mode="legacy", cache=None) as c:
            while not self.stop.is_set():
                try:
                    result = await c.call_tool(self.tool, {"message": "x"})
                    self.ok += 1 if not result.is_error else 0
                except MCPError as exc:
                    self.failed.append(exc.error.message)


async def test_edits_under_load(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    config = write(path, {"keep": stdio(), "drop": stdio(), "change": stdio()})
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub, anyio.create_task_group() as tg:
            load = Load(hub, "keep__echo")
            tg.start_soon(load.run)
            async with Client(hub.url, mode="legacy", cache=None, message_handler=on_message) as c:
                await until(lambda: _true_after(load))
                # add one, remove one, change one (new args), leave one alone
                write(path, {"keep": stdio(), "change": stdio("--tools", "2"), "added": stdio()})
                await until(lambda: _has(c, {"added__echo", "change__tool_1"}, {"drop__echo"}))
                assert changed.is_set()
                # disable one
                write(path, {"keep": stdio(), "change": stdio("--tools", "2"), "added": stdio(disabled=True)})
                await until(lambda: _has(c, set(), {"added__echo"}))
                # break it: refused, reported, the running config stays
                path.write_text("{ not json")
                reloader = hub.app.reloader
                assert reloader is not None
                await until(lambda: _async(reloader.last_error is not None))
                async with httpx.AsyncClient() as http:
                    doc = (await http.get(f"{hub.base}/health")).json()
                assert "not valid JSON" in doc["config"]["lastError"] and doc["status"] == "degraded"
                assert "keep__echo" in await tool_names(c)
                # a missing ${VAR} is refused too, naming it
                path.write_text(json.dumps({"mcpServers": {"keep": stdio(env={"T": "${ONEMCP_TEST_NOPE}"})}}))
                await until(lambda: _async("ONEMCP_TEST_NOPE" in (reloader.last_error or "")))
                # and a good version is taken again
                write(path, {"keep": stdio(), "change": stdio("--tools", "2")})
                await until(lambda: _async(reloader.last_error is None))
                assert text_of(await c.call_tool("change__tool_0", {})) is not None
            calls_before = load.ok
            await until(lambda: _async(load.ok > calls_before))  # still serving
            load.stop.set()
    print(f"\nreload under load: {load.ok} calls to the untouched server, {len(load.failed)} failed")
    assert load.failed == [], load.failed[:3]
    assert load.ok > 0


async def _true_after(load: Load) -> bool:
    return load.ok > 3


async def _async(value: bool) -> bool:
    return value


async def _has(c: Client, present: set[str], absent: set[str]) -> bool:
    names = await tool_names(c)
    return present <= names and not (absent & names)


def text_of(result: types.CallToolResult) -> str | None:
    item = result.content[0] if result.content else None
    return item.text if isinstance(item, types.TextContent) else None


async def test_removing_a_server_lets_its_calls_finish(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    config = write(path, {"a": stdio(), "b": stdio()})
    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub:
            async with Client(hub.url, mode="legacy", cache=None) as c:
                results: list[str | None] = []

                async def slow() -> None:
                    results.append(text_of(await c.call_tool("b__sleep", {"seconds": 1})))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(slow)
                    conn = hub.app.hub.pool.connections["b"]
                    await until(lambda: _async(conn.in_flight > 0))
                    write(path, {"a": stdio()})
                await until(lambda: _async("b" not in hub.app.hub.pool.slots))
                assert results and results[0] is not None  # the in-flight call completed
                with pytest.raises(MCPError):
                    await c.call_tool("b__echo", {"message": "gone"})


async def test_killing_an_upstream_under_load_fails_only_its_calls(tmp_path: Path) -> None:
    import os
    import signal

    config = {"mcpServers": {"keep": stdio(), "victim": stdio()}}
    with anyio.fail_after(DEADLINE):
        async with running_hub(config) as hub, anyio.create_task_group() as tg:
            keep, victim = Load(hub, "keep__echo"), Load(hub, "victim__echo")
            tg.start_soon(keep.run)
            tg.start_soon(victim.run)
            await until(lambda: _async(keep.ok > 5 and victim.ok > 5))
            transport = hub.app.hub.pool.connections["victim"].transport
            assert isinstance(transport, StdioTransport) and transport.pid is not None
            os.kill(transport.pid, signal.SIGKILL)
            slot = hub.app.hub.pool.slots["victim"]
            await until(lambda: _async(slot.restarts > 0 and slot.conn.state == "ready"))
            back = victim.ok
            await until(lambda: _async(victim.ok > back + 5))  # its tools are served again
            keep.stop.set()
            victim.stop.set()
    print(
        f"\nkill under load: keep ok={keep.ok} failed={len(keep.failed)}; "
        f"victim ok={victim.ok} failed={len(victim.failed)} {sorted(set(victim.failed))[:2]}"
    )
    assert keep.failed == []
    assert all("[victim]" in message or "victim" in message for message in victim.failed)


@asynccontextmanager
async def reloading(path: Path, servers: dict[str, Any]) -> AsyncIterator[tuple[RunningHub, Reloader]]:
    """A hub on `servers`, written to `path`, and the reloader that reads its edits."""
    async with running_hub(write(path, servers), config_path=path) as hub:
        assert hub.app.reloader is not None
        yield hub, hub.app.reloader


async def test_an_auth_change_waits_for_a_restart_and_says_so(tmp_path: Path) -> None:
    """Who may come in is fixed at start: a reload that changes it is reported, not half-applied."""
    path = tmp_path / "mcp.json"
    with anyio.fail_after(DEADLINE):
        async with reloading(path, {"a": stdio()}) as (hub, reloader), httpx.AsyncClient() as http:
            write(path, {"a": stdio()}, auth={"apiKeys": True})
            assert await reloader.reload()
            doc = (await http.get(f"{hub.base}/health")).json()
            assert doc["config"]["restartNeeded"] == ["onemcp.auth"] and doc["status"] == "degraded"
            # still open (the running hub keeps its start-up settings), as the health says
            r = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert r.status_code != 401
            write(path, {"a": stdio()}, auth={"apiKeys": True}, searchCache="elsewhere")  # read once at start too
            assert await reloader.reload()
            needed = (await http.get(f"{hub.base}/health")).json()["config"]["restartNeeded"]
            assert needed == ["onemcp.auth", "onemcp.searchCache"]
            write(path, {"a": stdio()}, audit=str(tmp_path / "audit.log"), sessionStore="off")  # opened at start
            assert await reloader.reload()
            needed = (await http.get(f"{hub.base}/health")).json()["config"]["restartNeeded"]
            assert needed == ["onemcp.audit", "onemcp.sessionStore"]
            write(path, {"a": stdio()})  # back as it started: nothing waits any more
            assert await reloader.reload()
            assert (await http.get(f"{hub.base}/health")).json()["config"]["restartNeeded"] == []


async def test_an_edit_made_while_out_of_file_descriptors_is_applied_once_they_are_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20: under an fd exhaustion attack a config edit failed with EMFILE and was never applied."""
    import errno

    path = tmp_path / "mcp.json"
    config = write(path, {"a": stdio()})
    real_read = Path.read_bytes
    failing = {"left": 2}  # the first two reads fail as they would with no fd left

    def read_bytes(self: Path) -> bytes:
        if self == path and failing["left"] > 0:
            failing["left"] -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_read(self)

    with anyio.fail_after(DEADLINE):
        async with running_hub(config, config_path=path) as hub:
            reloader = hub.app.reloader
            assert reloader is not None
            monkeypatch.setattr(Path, "read_bytes", read_bytes)
            write(path, {"a": stdio(), "b": stdio()})
            assert not await reloader.reload()  # EMFILE: not applied, but not given up on either
            assert "Too many open files" in (reloader.last_error or "")
            await until(lambda: _configured(hub, "b"))  # retried (twice, backing off) until it could be read
            assert failing["left"] == 0 and reloader.last_error is None


async def _configured(hub: RunningHub, server: str) -> bool:
    return server in hub.app.hub.config.servers


async def test_an_edit_that_would_break_the_reader_keeps_the_hub_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path Python cannot expand is a refused edit like any other; and should a reader ever fail in
    a way nobody foresaw, the edit is refused the same way: the hub never ends over a config edit."""
    path = tmp_path / "mcp.json"
    with anyio.fail_after(DEADLINE):
        async with reloading(path, {"a": stdio()}) as (hub, reloader), httpx.AsyncClient() as http:
            write(path, {"a": stdio(), "b": stdio()}, instructionsFile="~nosuchuser0123/x.txt")
            assert not await reloader.reload()
            doc = (await http.get(f"{hub.base}/health")).json()
            assert doc["status"] == "degraded" and "instructionsFile" in doc["config"]["lastError"], doc["config"]

            def broken(_: Path) -> None:
                raise RuntimeError("a reader's bug")

            monkeypatch.setattr(reload_module, "load_config", broken)
            assert not await reloader.reload()
            assert (
                "RuntimeError: a reader's bug" in (await http.get(f"{hub.base}/health")).json()["config"]["lastError"]
            )
            r = await http.post(hub.url, json=INIT, headers=HEADERS)
            assert r.status_code == 200 and set(hub.app.hub.config.servers) == {"a"}  # the running config serves


async def test_a_refused_edit_is_said_without_the_credentials_it_holds(tmp_path: Path) -> None:
    """`config.lastError` (/health, the admin API's reload status) is shown to every operator-scope caller,
    and was the parser's text as it was: `"args": "--token=ghp_..."` (args written as one string) was quoted
    there whole, though the log line for the same refusal masked it. It is now scrubbed as the log is."""
    path = tmp_path / "mcp.json"
    key = "ghp_abcdefghijklmnop1234567890"
    with anyio.fail_after(DEADLINE):
        async with reloading(path, {"a": stdio()}) as (hub, reloader), httpx.AsyncClient() as http:
            write(path, {"a": stdio(), "b": {"command": "x", "args": f"--token={key}"}})
            assert not await reloader.reload()
            said = (await http.get(f"{hub.base}/health")).json()["config"]["lastError"]
            assert "mcpServers.b.args: expected a list, not the string '--token=***'" in said, said
            reloaded = (await http.post(f"{hub.base}/api/v1/reload")).json()["reload"]["lastError"]
            assert key[:12] not in reloaded and "mcpServers.b.args" in reloaded, reloaded


async def test_each_file_keeps_its_own_error(tmp_path: Path) -> None:
    """A bad presets.json is reported until a good one is read (not for as long as the hub runs), and
    a good mcp.json edit does not hide it."""
    path = tmp_path / "mcp.json"
    presets = tmp_path / "presets.json"
    with anyio.fail_after(DEADLINE):
        async with reloading(path, {"a": stdio(tags=["dev"])}) as (_, reloader):
            presets.write_text(json.dumps({"presets": {"dev": {"filter": "dev and ("}}}))
            assert not reloader.load_presets()
            assert "presets.json" in (reloader.last_error or "")
            presets.write_text(json.dumps({"presets": {"dev": {"filter": "dev"}}}))
            assert reloader.load_presets() and reloader.last_error is None
            presets.write_text(json.dumps({"presets": {"dev": {"filter": "dev and ("}}}))
            assert not reloader.load_presets()
            write(path, {"a": stdio(tags=["dev"]), "b": stdio()})
            assert await reloader.reload()
            assert "presets.json" in (reloader.last_error or "")  # still wrong: still said
            write(path, {"a": stdio(tags=["dev"])}, prefixMode="bogus")
            assert not await reloader.reload()
            said = reloader.last_error or ""
            assert "prefixMode" in said and "presets.json" in said  # both, each for its own file


def disabled(n: int) -> str:
    return json.dumps({"mcpServers": {f"s{n}": {"command": "true", "disabled": True}}})


async def reloads_on(reloader: Reloader, edit: Any) -> None:
    """Edit (again, each a new version, until the watch has seen one) and wait for the reload."""
    before, n = reloader.reloads, 0
    while reloader.reloads == before:
        n += 1
        edit(n)
        for _ in range(40):
            if reloader.reloads != before:
                return
            await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline


async def test_a_symlinked_config_is_watched_where_it_leads(tmp_path: Path) -> None:
    """hunt-ops F4: a dotfiles-style link was never reloaded (only its folder was watched, by name)."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "dotfiles").mkdir()
    target, link = tmp_path / "dotfiles" / "mcp.json", tmp_path / "conf" / "mcp.json"
    target.write_text(disabled(0))
    link.symlink_to(Path("..") / "dotfiles" / "mcp.json")
    with anyio.fail_after(DEADLINE):
        async with running_hub(json.loads(disabled(0)), config_path=link) as hub:
            reloader = hub.app.reloader
            assert reloader is not None
            await reloads_on(reloader, lambda n: target.write_text(disabled(n)))  # edited in place
            await reloads_on(reloader, lambda n: write(target, {f"t{n}": {"command": "true", "disabled": True}}))
            other = tmp_path / "dotfiles" / "other.json"
            other.write_text(disabled(100))

            def repoint(n: int) -> None:  # the link itself now leads elsewhere (atomically)
                other.write_text(disabled(100 + n))
                (tmp_path / "conf" / "new").symlink_to(other)
                (tmp_path / "conf" / "new").replace(link)

            await reloads_on(reloader, repoint)
            assert "s101" in hub.app.hub.config.servers
            await reloads_on(reloader, lambda n: other.write_text(disabled(200 + n)))  # watched there now


async def test_an_edit_of_the_env_file_beside_the_config_is_applied(tmp_path: Path) -> None:
    """A token rotated in `.env` stayed the old one in the running hub (only mcp.json was watched), and was
    applied by surprise at the next, unrelated, edit of mcp.json."""
    path, dotenv = tmp_path / "mcp.json", tmp_path / ".env"
    dotenv.write_text("TOKEN=old\n")
    path.write_text(json.dumps({"mcpServers": {"s": {"command": "true", "disabled": True, "env": {"T": "${TOKEN}"}}}}))
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"s": {"command": "true", "disabled": True, "env": {"T": "old"}}}},
                               config_path=path) as hub:  # fmt: skip
            reloader = hub.app.reloader
            assert reloader is not None
            await reloads_on(reloader, lambda n: dotenv.write_text(f"TOKEN=new{n}\n"))
            assert hub.app.hub.config.servers["s"].env["T"].startswith("new")


async def test_a_configmap_swap_is_reloaded(tmp_path: Path) -> None:
    """Kubernetes mounts mcp.json -> ..data/mcp.json, ..data -> ..<timestamp>/, and swaps ..data atomically."""
    mount = tmp_path / "mount"
    (mount / "..v1").mkdir(parents=True)
    (mount / "..v1" / "mcp.json").write_text(disabled(0))
    (mount / "..data").symlink_to("..v1")
    (mount / "mcp.json").symlink_to(Path("..data") / "mcp.json")
    with anyio.fail_after(DEADLINE):
        async with running_hub(json.loads(disabled(0)), config_path=mount / "mcp.json") as hub:
            reloader = hub.app.reloader
            assert reloader is not None
            versions = ["..v1"]

            def swap(_: int) -> None:
                version = f"..v{len(versions) + 1}"
                (mount / version).mkdir()
                (mount / version / "mcp.json").write_text(disabled(len(versions)))
                (mount / "..data_tmp").symlink_to(version)
                (mount / "..data_tmp").replace(mount / "..data")
                shutil.rmtree(mount / versions[-1])
                versions.append(version)

            await reloads_on(reloader, swap)
            await reloads_on(reloader, swap)  # the second swap too: the watch followed the first
            assert hub.app.hub.config.servers.keys() == {f"s{len(versions) - 1}"}


async def test_a_config_folder_removed_and_made_again_is_watched_again(tmp_path: Path) -> None:
    """hunt-ops F7: once the config's folder was removed, the watch on it was dead: a new mcp.json in a
    folder made again (a deploy swapping the folder, a checkout) was never applied until SIGHUP."""
    deploy = tmp_path / "deploy"
    conf, path = deploy / "conf", deploy / "conf" / "mcp.json"
    conf.mkdir(parents=True)
    path.write_text(disabled(0))
    with anyio.fail_after(DEADLINE):
        async with running_hub(json.loads(disabled(0)), config_path=path) as hub:
            reloader = hub.app.reloader
            assert reloader is not None
            await reloads_on(reloader, lambda n: path.write_text(disabled(n)))  # the watch stands
            shutil.rmtree(deploy)  # two levels of folders gone
            await until(lambda: _async(reloader.config_error is not None))  # seen, and said in /health
            conf.mkdir(parents=True)
            path.write_text(disabled(100))
            await until(lambda: _async("s100" in hub.app.hub.config.servers))
            await reloads_on(reloader, lambda n: path.write_text(disabled(200 + n)))  # and watched there again

            swap = deploy / "conf.new"  # the folder swapped for another by renames
            swap.mkdir()
            (swap / "mcp.json").write_text(disabled(300))
            conf.rename(deploy / "conf.old")
            swap.rename(conf)
            await until(lambda: _async("s300" in hub.app.hub.config.servers))
            await reloads_on(reloader, lambda n: path.write_text(disabled(400 + n)))  # the new folder, not the old


async def test_the_replicas_presets_wait_for_the_edit_lock_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica takes the presets another replica shared into its presets.json under the file's edit lock,
    which `onemcp preset` (or an admin API edit) may hold. The lock was waited for on the event loop (polled
    with time.sleep, up to 10 s): the whole hub stood still, then the write failed. It is waited for on a
    worker thread now: the hub answers meanwhile, and the presets are written once the lock is free."""
    path, presets = tmp_path / "mcp.json", tmp_path / "presets.json"
    holding, release, waiting = threading.Event(), threading.Event(), threading.Event()
    try_lock = files.try_lock

    def tried(fd: int) -> bool:
        held = try_lock(fd)
        if not held:
            waiting.set()  # the write found the lock held: it waits
        return held

    def editor() -> None:  # `onemcp preset` editing presets.json
        with files.locked(presets):
            holding.set()
            release.wait(DEADLINE)

    monkeypatch.setattr(files, "try_lock", tried)
    written = anyio.Event()
    with anyio.fail_after(DEADLINE):
        async with reloading(path, {"a": stdio(tags=["dev"])}) as (hub, reloader), httpx.AsyncClient() as http:

            async def shared() -> None:
                await reloader._write_presets({"dev": {"filter": "dev"}})
                written.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, editor)
                await anyio.to_thread.run_sync(holding.wait, DEADLINE)
                tg.start_soon(shared)
                await anyio.to_thread.run_sync(waiting.wait, DEADLINE)
                assert (await http.post(hub.url, json=INIT, headers=HEADERS)).status_code == 200  # meanwhile
                assert not written.is_set()
                release.set()
    assert json.loads(presets.read_text())["presets"] == {"dev": {"filter": "dev"}}


async def test_sighup_rereads_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kill -HUP` makes the HTTP hub read mcp.json again, with no file watch to notice the edit."""

    async def no_watch(self: Reloader) -> None:
        await anyio.sleep_forever()

    monkeypatch.setattr(Reloader, "_watch", no_watch)
    path = tmp_path / "mcp.json"
    before = signal.signal(signal.SIGHUP, lambda *_: None)  # until the hub's receiver stands: not the end of pytest
    try:
        with anyio.fail_after(DEADLINE):
            async with reloading(path, {"a": stdio()}) as (hub, reloader):
                write(path, {"a": stdio(), "b": stdio()})
                while reloader.reloads == 0:
                    os.kill(os.getpid(), signal.SIGHUP)  # again: one sent before the receiver stood is lost
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
                assert set(hub.app.hub.config.servers) == {"a", "b"}
    finally:
        signal.signal(signal.SIGHUP, before)


async def test_a_preset_naming_a_tag_no_server_has_is_kept_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`?filter=typo` is a 400; a preset with that typo (written by hand) was an empty view with nothing said."""
    path = tmp_path / "mcp.json"
    with anyio.fail_after(DEADLINE):
        async with reloading(path, {"a": stdio(tags=["dev"])}) as (_, reloader):
            caplog.set_level("WARNING", logger="onemcp.reload")
            (tmp_path / "presets.json").write_text(json.dumps({"presets": {"p": {"filter": "dve or dev"}}}))
            assert reloader.load_presets() and reloader.last_error is None  # kept: a server may come to have it
            said = [r.getMessage() for r in caplog.records if r.name == "onemcp.reload"]
            assert said == ["preset 'p' names tag(s) no server has: 'dve' (the tags in use: dev)"]


async def test_a_reload_is_logged_in_words(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The log said "config reloaded: {'added': ['b']}" (a Python dict), and "config reloaded: {}" for an
    edit of the hub's own settings."""
    path = tmp_path / "mcp.json"
    caplog.set_level("INFO", logger="onemcp.reload")
    with anyio.fail_after(DEADLINE):
        async with reloading(path, {"a": stdio()}) as (_, reloader):
            write(path, {"a": stdio(), "b": stdio()})
            assert await reloader.reload()
            write(path, {"a": stdio(), "b": stdio()}, separator="--")
            assert await reloader.reload()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("config reloaded")]
    assert said == ["config reloaded: added b", "config reloaded: hub settings only, no server changed"], said


def rendered(fmt: str, servers: dict[str, Any]) -> str:
    """`servers` as a block-style mcp.yaml or an mcp.toml: each server a block of its own, as people write them."""
    lines = ["mcpServers:"] if fmt == "yaml" else []
    for name, server in servers.items():
        command, args = json.dumps(server["command"]), json.dumps(server["args"])
        if fmt == "yaml":
            lines += [f"  {name}:", f"    command: {command}", f"    args: {args}"]
        else:
            lines += [f"[mcpServers.{name}]", f"command = {command}", f"args = {args}", ""]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("fmt", ["yaml", "toml"])
async def test_a_file_written_in_place_in_pieces_is_read_once_it_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fmt: str
) -> None:
    """A writer that truncates mcp.yaml and writes it in pieces leaves, for a while, a prefix that YAML and
    TOML read as a config with fewer servers: read then, the servers after the cut were stopped (and started
    again once the rest landed). The hub reads a change once the file has stayed the same for a while."""
    path = tmp_path / f"mcp.{fmt}"
    kept = {"a": stdio(), "b": stdio()}
    path.write_text(rendered(fmt, kept))
    text = rendered(fmt, {**kept, "c": stdio()})
    cut = text.index("  b:" if fmt == "yaml" else "[mcpServers.b]")  # the first piece: server a only
    rest_now, rest_written = anyio.Event(), anyio.Event()
    real_load = load_config

    def load(found: Path) -> Any:
        config = real_load(found)
        rest_now.set()  # a reader that does not wait for quiet: the rest lands only after it read the first piece
        return config

    async def quiet(_: Reloader) -> None:
        rest_now.set()  # the rest lands while the reloader waits for the file to settle
        await rest_written.wait()

    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": kept}, config_path=path) as hub:
            caplog.set_level("INFO", logger="onemcp.reload")
            connections = dict(hub.app.hub.pool.connections)
            monkeypatch.setattr(reload_module, "load_config", load)
            monkeypatch.setattr(Reloader, "_quiet", quiet, raising=False)
            with path.open("r+") as file:  # in place: truncated, then written in two pieces
                file.truncate(0)
                file.write(text[:cut])
                file.flush()
                await rest_now.wait()
                file.write(text[cut:])
            rest_written.set()
            await until(lambda: _configured(hub, "c"))
            reloads = [r.getMessage() for r in caplog.records if r.getMessage().startswith("config reloaded")]
            assert reloads == ["config reloaded: added c"]
            assert all(hub.app.hub.pool.connections[name] is connections[name] for name in kept)  # never restarted


async def test_an_empty_or_ever_changing_file_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty mcp.yaml is most often one being written (YAML and TOML read it as no servers): refused, said.
    A file that never stays the same is not read either: the next change is."""

    async def no_watch(self: Reloader) -> None:
        await anyio.sleep_forever()

    monkeypatch.setattr(Reloader, "_watch", no_watch)  # the reloads here are the test's own
    path = tmp_path / "mcp.yaml"
    path.write_text(rendered("yaml", {"a": stdio()}))
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": {"a": stdio()}}, config_path=path) as hub:
            reloader = hub.app.reloader
            assert reloader is not None
            path.write_text("")
            assert not await reloader.reload()
            assert "the file is empty" in (reloader.last_error or "")
            assert set(hub.app.hub.config.servers) == {"a"}
            looks: list[int] = []

            async def quiet(_: Reloader) -> None:
                looks.append(len(looks))
                path.write_text(rendered("yaml", {f"s{len(looks)}": stdio()}))  # a new version every time

            monkeypatch.setattr(Reloader, "_quiet", quiet)
            monkeypatch.setattr(reload_module, "SETTLE_TRIES", 3)
            assert not await reloader.reload(settle=True)
            assert "kept changing" in (reloader.last_error or "") and len(looks) == 3
            assert set(hub.app.hub.config.servers) == {"a"}
