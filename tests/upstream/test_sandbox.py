"""Sandboxed stdio servers: real processes over their limits are stopped with the reason, and stay stopped.

A fixture server that allocates without bound, one that forks, one that burns CPU, one run as
another user, one inside bubblewrap without network: each through a real hub (`running_hub`),
with the reason read back from `/health` as an operator would. Unit checks of the pieces
(`argv`, `over`, `usage`, config validation) come first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from pydantic import ValidationError

from fixtures.launch import fixture_command
from onemcp.config.model import HubConfig, Sandbox
from onemcp.upstream import sandbox
from support.hub import RunningHub, running_hub

DEADLINE = 60.0


def stdio(*args: str, **extra: Any) -> dict[str, Any]:
    cmd = fixture_command(*args)
    return {"command": cmd[0], "args": cmd[1:], **extra}


def shell(script: str, **extra: Any) -> dict[str, Any]:
    return {"command": "/bin/sh", "args": ["-c", script], **extra}


async def health(hub: RunningHub) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        doc: dict[str, Any] = (await http.get(f"{hub.base}/health")).json()
        return doc


async def stopped(hub: RunningHub, name: str, status: str = "over-limit") -> dict[str, Any]:
    with anyio.fail_after(30):
        while (entry := (await health(hub))["upstreams"][name])["supervisor"] != status:
            await anyio.sleep(0.05)  # allowed-sleep: polling /health with a deadline
    found: dict[str, Any] = entry
    return found


def test_the_pieces() -> None:
    box = Sandbox.model_validate({"memoryMB": 100, "processes": 3})
    assert sandbox.over(box, sandbox.Usage(50 * 1024 * 1024, 2)) is None
    assert sandbox.over(box, sandbox.Usage(150 * 1024 * 1024, 2)) == (
        "over its sandbox limit: memory 150 MiB > sandbox.memoryMB 100"
    )
    assert sandbox.over(box, sandbox.Usage(1, 4)) == "over its sandbox limit: 4 processes > sandbox.processes 3"
    mine = sandbox.usage(os.getsid(0))
    assert mine.processes >= 1 and mine.rss_bytes > 10 * 1024 * 1024  # this test process is in its own session
    assert sandbox.argv(None, "cmd", ["a"], None) == ["cmd", "a"]
    if shutil.which("bwrap"):
        wrapped = sandbox.argv(Sandbox(isolate=True, network=False), "cmd", ["a"], "/srv")
        assert wrapped[-3:] == ["--", "cmd", "a"] and "--unshare-net" in wrapped and "/srv" in wrapped
    with pytest.raises(sandbox.SandboxError, match="no user 'no-such-user'"):
        sandbox.preexec(Sandbox(user="no-such-user"), lambda: None)


@pytest.mark.parametrize(
    ("server", "complaint"),
    [
        ({"url": "http://x/mcp", "sandbox": {"memoryMB": 10}}, "'sandbox' is for stdio servers"),
        ({"command": "x", "sandbox": {"network": False}}, "apply with 'isolate': true"),
        ({"command": "x", "sandbox": {"memoryMb": 10}}, "memoryMb"),  # a typo is an error, not ignored
        ({"command": "x", "sandbox": {"processes": 0}}, "greater than 0"),
    ],
)
def test_bad_sandbox_settings_are_refused(server: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError) as refused:
        HubConfig.model_validate({"mcpServers": {"s": server}})
    assert complaint in str(refused.value)


@pytest.mark.anyio
async def test_memory_and_forks_over_the_limit_stop_the_server_with_the_reason(tmp_path: Path) -> None:
    servers = {
        "hog": stdio("--sandbox-tools", sandbox={"memoryMB": 120}),
        "forks": stdio("--sandbox-tools", sandbox={"processes": 3}),
        "calm": stdio("--sandbox-tools", sandbox={"memoryMB": 400, "processes": 8}),
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}) as hub, Client(hub.url, mode="legacy", cache=None) as c:
            assert not (await c.call_tool("calm__hog", {"mb": 50})).is_error  # within its limits: fine
            assert not (await c.call_tool("calm__spawn", {"count": 2})).is_error
            pid = (await health(hub))["upstreams"]["forks"]["pid"]
            with pytest.raises(Exception):  # noqa: B017 - the call dies with its server, whatever the error class
                await c.call_tool("hog__hog", {"mb": 400, "hold": 60})  # answered only if never stopped
            entry = await stopped(hub, "hog")
            assert "over its sandbox limit: memory" in entry["lastError"], entry
            assert "sandbox.memoryMB 120" in entry["lastError"] and entry["state"] != "ready"
            with pytest.raises(Exception):  # noqa: B017
                # held until the watch stops the server (within POLL of the spawns; 60 s: a loaded machine)
                await c.call_tool("forks__spawn", {"count": 6, "hold": 60})
            entry = await stopped(hub, "forks")
            assert "processes > sandbox.processes 3" in entry["lastError"], entry
            with anyio.fail_after(5):
                while sandbox.usage(pid).processes:
                    await anyio.sleep(0.05)  # allowed-sleep: its whole session is killed, children included
            assert (await health(hub))["upstreams"]["calm"]["state"] == "ready"  # the others go on
            assert (await c.call_tool("calm__echo", {"message": "still here"})).content[0].text == "still here"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_cpu_time_open_files_and_the_user_are_set_on_the_child() -> None:
    servers = {
        "spin": shell("while :; do :; done", sandbox={"cpuSeconds": 1}),
        "who": shell("id -u >&2; ulimit -n >&2; exit 3", sandbox={"user": "nobody", "openFiles": 64}),
    }
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}, wait=False) as hub:
            entry = await stopped(hub, "spin")
            assert entry["lastError"].endswith("over its sandbox limit: CPU time > sandbox.cpuSeconds 1"), entry
            # what the child printed (its uid, its fd limit) before exiting; it is restarted again and again,
            # so the stderr tail is read, not one attempt's lastError
            async with httpx.AsyncClient() as http:
                with anyio.fail_after(20):
                    while (
                        "65534"
                        not in (detail := (await http.get(f"{hub.base}/api/v1/servers/who")).json())["stderrTail"]
                    ):
                        await anyio.sleep(0.05)  # allowed-sleep: polling the API with a deadline
            assert "64" in detail["stderrTail"], detail["stderrTail"]
            assert "code None" not in str(detail["lastError"]), detail  # the code, even of a child gone at once


@pytest.mark.anyio
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (scripts/test installs it)")
async def test_isolation_makes_the_filesystem_read_only_and_can_cut_the_network(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    script = (
        f"touch /usr/onemcp-probe 2>/dev/null || echo ro-ok >&2; touch {work}/inside && echo rw-ok >&2;"
        " cat /proc/net/dev | wc -l >&2; exit 4"
    )
    servers = {"boxed": shell(script, cwd=str(work), sandbox={"isolate": True, "network": False})}
    with anyio.fail_after(DEADLINE):
        async with running_hub({"mcpServers": servers}, wait=False) as hub:
            with anyio.fail_after(20):
                while "exited with code 4" not in str((await health(hub))["upstreams"]["boxed"]["lastError"]):
                    await anyio.sleep(0.05)  # allowed-sleep: polling /health with a deadline
            async with httpx.AsyncClient() as http:
                tail = (await http.get(f"{hub.base}/api/v1/servers/boxed")).json()["stderrTail"]
    assert "ro-ok" in tail and "rw-ok" in tail, tail
    assert not await anyio.Path("/usr/onemcp-probe").exists() and await anyio.Path(work / "inside").exists()
    assert "3" in tail  # /proc/net/dev: two header lines and the loopback device alone
