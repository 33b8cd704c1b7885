"""`onemcp mcp restart NAME...` in-process against a real hub: a server the hub gave up on comes back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from support.cli import cli

DEADLINE = 60.0


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    monkeypatch.delenv("ONEMCP_CONFIG", raising=False)
    monkeypatch.delenv("ONEMCP_TOKEN", raising=False)
    monkeypatch.setenv("ONEMCP_CONFIG_DIR", str(directory))
    return directory


async def upstream(base: str, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        while True:
            try:
                doc = (await client.get(f"{base}/health")).json()
                if name in doc.get("upstreams", {}) and doc["upstreams"][name]["state"] != "starting":
                    found: dict[str, Any] = doc["upstreams"][name]
                    return found
            except httpx.TransportError:
                pass
            await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline


@pytest.mark.anyio
async def test_a_server_whose_command_was_installed_since_comes_back(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command not installed is not retried (retrying cannot help): once it is, nothing on the command
    line started it again short of an edit of its entry or a restart of the whole hub."""
    later = config_dir / "later-server"
    servers = {"later": {"command": str(later)}, "demo": {"command": sys.executable, "args": ["-m", "onemcp.demo"]}}
    servers["off"] = {"command": sys.executable, "disabled": True}
    await anyio.Path(config_dir / "mcp.json").write_bytes(orjson.dumps({"mcpServers": servers}))
    env = {k: v for k, v in os.environ.items() if k != "ONEMCP_CONFIG"}
    process = await anyio.open_process(
        [sys.executable, "-m", "onemcp", "serve", "--port", "0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=None,
    )
    try:
        with anyio.fail_after(DEADLINE):
            runtime = anyio.Path(config_dir / "runtime.json")
            while not await runtime.exists():
                await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
            base = orjson.loads(await runtime.read_bytes())["url"].removesuffix("/mcp")
            gone = await upstream(base, "later")
            assert (gone["state"], gone["supervisor"]) == ("failed", "command-not-found"), gone
            await anyio.Path(later).write_text(f"#!/bin/sh\nexec {sys.executable} -m onemcp.demo\n")
            await anyio.Path(later).chmod(0o755)
            code, out, err = await anyio.to_thread.run_sync(lambda: cli(capsys, "mcp", "restart", "later"))
            assert (code, out, err) == (0, "onemcp: later: ready\n", "")
            code, out, err = await anyio.to_thread.run_sync(lambda: cli(capsys, "mcp", "restart", "nosuch"))
            path = config_dir / "mcp.json"  # h4: said from mcp.json (it was the hub's 'no enabled server')
            said = f"onemcp: nosuch: no server 'nosuch' in {path} (configured: demo, later, off)\n"
            assert (code, out, err) == (1, "", said)
            code, out, err = await anyio.to_thread.run_sync(lambda: cli(capsys, "mcp", "restart", "off"))
            said = f"onemcp: off: it is disabled in {path}: `onemcp mcp enable off` switches it on (the hub then"
            assert (code, out, err.startswith(said)) == (1, "", True), err
    finally:
        process.terminate()
        with anyio.fail_after(DEADLINE):
            await process.wait()


@pytest.mark.parametrize("name", ["tpl", "tpl@0123abcd"])
def test_a_template_or_its_instance_is_said_in_the_hubs_words(tmp_path: Path, name: str) -> None:
    """The hub says of a template's name that only its instances restart, and names them (97127e2); the CLI
    said over it, from mcpServers alone, that mcp.json has no server of that name, which it has, as a template
    (and the same of an instance that has ended since `mcp status` listed it)."""
    from onemcp.cli import server_restart

    path = tmp_path / "mcp.json"
    path.write_bytes(
        orjson.dumps({"mcpServers": {"demo": {"command": "x"}}, "mcpTemplates": {"tpl": {"command": "y"}}})
    )
    hubs = "no enabled server 'tpl': a template, restarted by its instances' names (tpl@0123abcd)"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": hubs})

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        said = server_restart._post(client, f"http://hub/api/v1/servers/{name}/restart", name, path)
    assert said == f"{name}: {hubs}"


def test_without_a_hub(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "mcp", "restart", "later")
    assert code == 1 and "no hub is running" in err
