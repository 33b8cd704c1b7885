"""The hub as the "client under test" of the conformance suite's auth scenarios.

    node <suite>/dist/index.js client --scenario auth/metadata-default \
        --command ".venv/bin/python tests/conformance/hub_client.py"

The suite appends its mock MCP server's URL (an OAuth-protected resource) as the last argument.
This script starts the hub in-process with that URL as its only upstream, plays the operator
(polls /health, follows each authorization link as a browser would: GET the link, do not follow
the authorization server's redirect, GET its Location on the hub's callback), and drives an MCP
client through the hub's /mcp: tools/list, then tools/call test-tool; when the call fails for
want of scope (a step-up link appears in /health) it follows the new link and retries once.

Settings come from the suite's environment: MCP_CONFORMANCE_SCENARIO picks the per-server
`oauth` config (basic-cimd: a Client ID Metadata Document URL); MCP_CONFORMANCE_CONTEXT carries a
pre-registered client (pre-registration). Exit 0 on success, 1 otherwise; everything is bounded
by DEADLINE (the suite kills a client after 30 s) and closed before exiting, so no process keeps
the suite's stdout/stderr pipes open.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import re
import sys
import time
from html import unescape
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.hub

from support.hub import RunningHub, running_hub

SERVER = "s"
TOOL = "test-tool"
CIMD_URL = "https://conformance-test.local/client-metadata.json"  # hard-coded in the suite's basic-cimd
DEADLINE = 22.0  # the exercise; the suite's own limit is 30 s per scenario
SHUTDOWN = 4.0  # the hub's graceful shutdown after it
MAX_LINKS = 3  # authorization links the operator follows in one run
POLL = 0.05

log = logging.getLogger("hub_client")


class Failed(Exception):
    """The scenario cannot succeed: the message says what the hub showed."""


def hub_config(url: str, scenario: str, context: dict[str, Any]) -> dict[str, Any]:
    server: dict[str, Any] = {"url": url}
    oauth: dict[str, Any] = {}
    if isinstance(context.get("client_id"), str):
        oauth["clientId"] = context["client_id"]
        if isinstance(context.get("client_secret"), str):
            oauth["clientSecret"] = context["client_secret"]
    if scenario.startswith("auth/client-credentials"):  # a machine client: no operator, no link
        oauth["grant"] = "client_credentials"
        if isinstance(context.get("private_key_pem"), str):
            oauth["privateKey"] = context["private_key_pem"]
            oauth["signingAlgorithm"] = context.get("signing_algorithm", "ES256")
    if scenario == "auth/basic-cimd" and "clientId" not in oauth:  # (the config refuses both: one client id)
        oauth["clientMetadataUrl"] = CIMD_URL
    if oauth:
        server["oauth"] = oauth
    return {"mcpServers": {SERVER: server}, "onemcp": {"prefixMode": "never"}}


def page_text(html: str) -> str:
    """The words of the hub's callback page (its heading and paragraph), for the log."""
    body = re.sub(r"(?is)<(style|script|title)\b.*?</\1>", " ", html)
    return unescape(" ".join(re.sub(r"<[^>]+>", " ", body).split()))[:300]


class Operator:
    """What a person with a browser does with the hub's /health page."""

    def __init__(self, hub: RunningHub, http: httpx.AsyncClient) -> None:
        self.hub = hub
        self.http = http
        self.followed: list[str] = []

    async def upstream(self) -> dict[str, Any]:
        r = await self.http.get(f"{self.hub.base}/health")
        doc: dict[str, Any] = r.json()["upstreams"].get(SERVER) or {}
        return doc

    async def authorize(self, link: str) -> None:
        if len(self.followed) >= MAX_LINKS:
            raise Failed(f"the hub asked for a {len(self.followed) + 1}th authorization; the operator gives up")
        self.followed.append(link)
        log.info("operator: following authorization link #%d: %s", len(self.followed), link)
        r = await self.http.get(link)  # the authorization server auto-approves
        if r.status_code not in (301, 302, 303, 307, 308) or "location" not in r.headers:
            raise Failed(f"the authorization endpoint answered {r.status_code}, not a redirect: {r.text[:200]}")
        callback = r.headers["location"]
        if not callback.startswith(f"{self.hub.base}/"):
            raise Failed(f"the authorization server redirected to {callback}, not to the hub")
        page = await self.http.get(callback)
        log.info("operator: hub callback answered %d", page.status_code)
        if page.status_code != 200:
            raise Failed(f"the hub's callback answered {page.status_code}: {page_text(page.text)}")

    async def settle(self, *, step_up: bool = False) -> None:
        """Until the upstream is ready, following the links the hub shows; raise when it cannot get there.

        `step_up`: a call just failed; a new link (more scope) is expected even though the upstream stays ready.
        Gives up when the hub reports an error, or restarts the upstream twice with nothing for the operator to do.
        """
        baseline: int | None = None
        while True:
            doc = await self.upstream()
            auth = doc.get("authorization") or {}
            link = auth.get("authorizeUrl")
            restarts = int(doc.get("restarts") or 0)
            baseline = restarts if baseline is None else baseline
            if auth.get("state") == "error":
                raise Failed(f"the hub cannot authorize: {auth.get('detail')}")
            if auth.get("state") == "required" and link and link not in self.followed:
                await self.authorize(link)
                step_up, baseline = False, None
            elif not step_up and doc.get("state") == "ready" and auth.get("state") in (None, "authorized"):
                return
            elif step_up and auth.get("state") not in ("required", "preparing"):
                raise Failed(f"the call failed but the hub asks for no authorization: {auth or doc}")
            elif restarts - baseline >= 2:
                raise Failed(
                    f"the upstream keeps failing and the hub asks for nothing (supervisor {doc.get('supervisor')}, "
                    f"{restarts - baseline} restarts, authorization {auth})"
                )
            await anyio.sleep(POLL)  # allowed-sleep: polling with a deadline


async def call_tool(client: Client) -> str:
    result = await client.call_tool(TOOL, {})
    text = " ".join(getattr(c, "text", "") for c in result.content)
    if result.is_error:
        raise MCPError(-32603, f"tool error: {text}")
    return text


async def exercise(hub: RunningHub, http: httpx.AsyncClient) -> None:
    operator = Operator(hub, http)
    await operator.settle()
    async with Client(streamable_http_client(hub.url), mode="legacy", cache=None) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        log.info("tools/list through the hub: %s", tools)
        if TOOL not in tools:
            raise Failed(f"{TOOL} is not listed: {tools}")
        try:
            text = await call_tool(client)
        except MCPError as exc:
            log.info("tools/call %s failed (%s); looking for a step-up link", TOOL, exc)
            await operator.settle(step_up=True)
            text = await call_tool(client)
        log.info("tools/call %s -> %r", TOOL, text)
    log.info("done after %d authorization(s)", len(operator.followed))


async def drive(url: str, scenario: str, context: dict[str, Any]) -> str | None:
    """Why the scenario failed, or None; the hub is shut down gracefully either way."""
    config = hub_config(url, scenario, context)
    log.info("scenario %s: hub config %s", scenario or "?", json.dumps(config))
    async with (
        httpx.AsyncClient(timeout=10.0, follow_redirects=False) as http,
        running_hub(config, wait=False) as hub,
    ):
        with anyio.move_on_after(DEADLINE) as scope:
            try:
                await exercise(hub, http)
            except Failed as exc:
                return str(exc)
            except MCPError as exc:
                return f"MCP error through the hub: {exc}"
        if scope.cancelled_caught:
            return f"no result within {DEADLINE:.0f}s"
    return None


async def main_async(url: str) -> int:
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    raw = os.environ.get("MCP_CONFORMANCE_CONTEXT")
    context = json.loads(raw) if raw else {}
    started = time.monotonic()
    try:
        with anyio.fail_after(DEADLINE + SHUTDOWN):
            failure = await drive(url, scenario, context)
    except TimeoutError:
        failure = f"the hub did not shut down within {SHUTDOWN:.0f}s"
    if failure is not None:
        log.error("FAILED after %.1fs: %s", time.monotonic() - started, failure)
        return 1
    log.info("OK in %.1fs", time.monotonic() - started)
    return 0


def main() -> int:
    if len(sys.argv) < 2 or not sys.argv[-1].startswith("http"):
        print("usage: hub_client.py <mcp server url>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.INFO)
    # A last resort if teardown itself hangs: show where, and exit before the suite's 30 s kill.
    faulthandler.dump_traceback_later(DEADLINE + SHUTDOWN + 2, exit=True)
    return anyio.run(main_async, sys.argv[-1])


if __name__ == "__main__":
    sys.exit(main())
