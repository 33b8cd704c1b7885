"""`/me` in a real browser (Debian's chromium driven by Playwright): a person keeps their own value.

A hub with API keys and a real stdio server whose env takes `${user:GH_TOKEN}`, reached through
its public name (so the page's changes carry that Origin, as behind a proxy). Alice signs in on the
page with her key, sees the name unset, saves a value that is too short (the endpoint's error is
shown, nothing stored), saves a good one (her next call runs with it), then forgets it. A wrong key
is refused; nothing of the key is kept in a cookie; the page's CSP allows only its own script.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from onemcp.auth.keys import KeyStore
from onemcp.downstream.my_secrets_page import serve
from support.hub import running_hub
from upstream.test_user_secrets import answer, call, gh_hub_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.anyio
NEEDS_CHROMIUM = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium not installed"
)


@NEEDS_CHROMIUM
async def test_a_person_keeps_their_value_on_the_page(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    config, path = gh_hub_config(tmp_path)
    config["onemcp"]["allowedHosts"] = ["hub.test"]  # a proxy's name for a hub bound to loopback
    path.write_text(json.dumps(config))
    alice = KeyStore(tmp_path / "keys.db").create("alice", ["mcp"])
    with anyio.fail_after(120):
        async with (
            running_hub(config, config_path=path, public_host="hub.test") as hub,
            httpx.AsyncClient(timeout=30) as http,
            async_playwright() as pw,
        ):
            # the browser reaches the hub by its public name, not loopback: the page's own Origin must pass
            public = hub.base.replace("127.0.0.1", "hub.test")
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--host-resolver-rules=MAP hub.test 127.0.0.1"]
            )
            try:
                page = await browser.new_page()
                response = await page.goto(f"{public}/me")
                assert response is not None and response.status == 200
                csp = response.headers["content-security-policy"]
                assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp.split("script-src")[1]

                await page.fill("input[name=key]", "omk_wrong_0123456789")
                await page.click("#signin button")
                await expect(page.locator("#say")).to_contain_text("unknown API key")  # the gate's own words

                await page.fill("input[name=key]", alice)
                await page.click("#signin button")
                row = page.locator("form.value")
                await expect(row).to_contain_text("GH_TOKEN")
                await expect(row).to_contain_text("not set; taken by gh")

                await row.locator("input").fill("short")
                await row.locator("button", has_text="Save").click()
                await expect(page.locator("#say")).to_contain_text("one credential")
                assert hub.app.hub.user_secrets.values(f"key:{alice.split('_')[1]}") == {}

                await row.locator("input").fill("alice-page-token-0123456789")
                await row.locator("button", has_text="Save").click()
                await expect(page.locator("#say")).to_contain_text("GH_TOKEN saved")
                value, _ = answer(await call(http, hub, alice))
                assert value == "alice-page-token-0123456789"  # her next call runs with it

                await row.locator("button", has_text="Forget").click()
                await expect(page.locator("#say")).to_contain_text("GH_TOKEN forgotten")
                await expect(row).to_contain_text("not set")
                assert await page.context.cookies() == []  # the key was never put in a cookie
                assert alice not in await page.content()  # nor left in the page
            finally:
                await browser.close()


async def test_the_page_answers_only_get() -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await serve(ask_key=False, send=send, method="POST")
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [405]
    sent.clear()
    await serve(ask_key=False, send=send, method="GET")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200]
    assert b"Show my values" in body and b"name=key" not in body  # no key field on a hub without auth


@NEEDS_CHROMIUM
async def test_on_a_hub_without_auth_the_page_only_lists(tmp_path: Path) -> None:
    """Everyone is one principal there: the names are listed with why only an operator sets them."""
    from playwright.async_api import async_playwright, expect

    config, path = gh_hub_config(tmp_path, auth=False)
    with anyio.fail_after(120):
        async with running_hub(config, config_path=path) as hub, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                await page.goto(f"{hub.base}/me")
                assert await page.locator("input[name=key]").count() == 0
                await page.click("#signin button")
                await expect(page.locator("#values")).to_contain_text("stands for several people")
                await expect(page.locator("form.value")).to_contain_text("not set; taken by gh")
                assert await page.locator("form.value button").count() == 0
            finally:
                await browser.close()
