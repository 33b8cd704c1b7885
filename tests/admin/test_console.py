"""The web console in a real browser: Debian's chromium driven by Playwright (no downloaded browser).

A hub on a loopback port with two fixture servers (one that fails at start, so there is a broken
server to look at) and API keys on. The test signs in with an admin key, clicks through the
overview, restarts a server and watches it come back, calls a tool from the form generated from
its input schema, edits a preset, and checks that a change without the CSRF token is refused and
that the page without the cookie sends you to the login. Screenshots of each page are saved in
`$ONEMCP_ARTIFACTS` (default: the test's tmp dir); `docs/console/` holds current ones.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from fixtures.launch import fixture_command
from onemcp.auth.keys import KeyStore
from support.hub import running_hub

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium not installed"
    ),
]
DEADLINE = 120.0


def config() -> dict[str, Any]:
    fx = fixture_command()
    return {
        "mcpServers": {
            "alpha": {"command": fx[0], "args": [*fx[1:], "--name", "alpha"]},
            "broken": {"command": fx[0], "args": [*fx[1:], "--crash-on-start"]},
        },
        "onemcp": {"auth": {"apiKeys": True}},
    }


@pytest.fixture
def artifacts(tmp_path: Path) -> Iterator[Path]:
    folder = Path(os.environ.get("ONEMCP_ARTIFACTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder


async def test_the_console_in_chromium(tmp_path: Path, artifacts: Path) -> None:
    from playwright.async_api import async_playwright, expect

    path = tmp_path / "mcp.json"
    doc = config()
    path.write_text(json.dumps(doc))
    store = KeyStore(tmp_path / "keys.db")
    admin, user = store.create("admin", ["admin"]), store.create("user", ["mcp"])
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc, config_path=path) as hub, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                # no key in this tab: the sign-in form; a wrong key, or one without operator: refused
                await page.goto(f"{hub.base}/ui/")
                # the hub cannot be reached: said so (it was no feedback at all, and an unhandled rejection)
                unreachable = f"{hub.base}/api/v1/"
                await page.route(unreachable, lambda route: route.abort())
                await page.fill("input[name=key]", admin)
                await page.click("button[type=submit]")
                await expect(page.locator(".error")).to_contain_text("the hub cannot be reached")
                assert await page.evaluate("sessionStorage.getItem('onemcp-console-key')") is None
                await page.unroute(unreachable)
                await page.fill("input[name=key]", "omk_wrong_key")
                await page.click("button[type=submit]")
                # this refusal's own words: "Not signed in" alone was already on the page (the unreachable
                # hub's), so the next key could be typed into the form this answer then replaced
                await expect(page.locator(".error")).to_contain_text("Not signed in: unknown API key")
                await page.fill("input[name=key]", user)
                await page.click("button[type=submit]")
                await expect(page.locator(".error")).to_contain_text("neither admin nor operator")
                await page.screenshot(path=artifacts / "login.png")
                await page.fill("input[name=key]", admin)
                await page.click("button[type=submit]")
                # the overview: both servers, the broken one failed with its error
                await expect(page.get_by_test_id("server-alpha")).to_contain_text("ready")
                await expect(page.get_by_test_id("server-broken")).to_contain_text("failed")
                await page.screenshot(path=artifacts / "overview.png")
                # the broken server's page says why it broke (its stderr)
                await page.get_by_test_id("server-broken").get_by_role("link").click()
                await expect(page.get_by_test_id("stderr")).not_to_have_text("(nothing)")
                await expect(page.locator("dl dt").first).to_have_text("Transport")  # not "[object HTMLElement]"
                await expect(page.locator("dl")).not_to_contain_text("object HTMLElement")
                await page.screenshot(path=artifacts / "server-broken.png")
                # restart alpha and watch it come back
                await page.get_by_test_id("tab-overview").click()
                await page.get_by_test_id("server-alpha").get_by_role("link").click()
                conn = hub.app.hub.pool.get("alpha")
                assert conn is not None
                pid = getattr(conn.transport, "pid", None)
                await expect(page.get_by_test_id("disable")).to_be_visible()  # a server not disabled: no Enable
                await expect(page.get_by_test_id("enable")).to_have_count(0)
                await page.get_by_test_id("restart").click()
                while True:
                    conn = hub.app.hub.pool.get("alpha")
                    if conn is not None and conn.state == "ready" and getattr(conn.transport, "pid", None) != pid:
                        break
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline
                await page.get_by_test_id("tab-overview").click()
                await expect(page.get_by_test_id("server-alpha")).to_contain_text("ready")
                # a slow answer to an earlier search does not replace a later one's: the first search
                # (everything, as the tab opens) is held until the user's own was answered and drawn
                held, release = anyio.Event(), anyio.Event()

                async def hold(route: Any) -> None:
                    held.set()
                    await release.wait()
                    await route.continue_()

                def everything(url: str) -> bool:
                    return "/tools?" in url and url.endswith("q=")

                await page.route(everything, hold)
                await page.get_by_test_id("tab-tools").click()
                await held.wait()
                first = page.locator(".toolresults a").first
                await page.get_by_test_id("tool-search").fill("sleep asynchronously, then answer")
                await expect(first).to_have_attribute("data-testid", "tool-alpha__sleep")
                async with page.expect_request_finished(lambda r: r.url.endswith("q=")):
                    release.set()
                # the page parses it next: a pause in the page, so a wrongly drawn list would be seen (a
                # slower machine could only hide the bug, never fail a good page)
                await page.evaluate("() => new Promise((r) => setTimeout(r, 50))")
                await expect(first).to_have_attribute("data-testid", "tool-alpha__sleep")
                await page.unroute(everything)

                # more tools than the first answer gives: "show all" lists the rest (the answer cut to one)
                async def one_of_them(route: Any) -> None:
                    answer = await route.fetch()
                    listed = await answer.json()
                    await route.fulfill(response=answer, json={**listed, "tools": listed["tools"][:1]})

                def first_page(url: str) -> bool:
                    return "/tools?limit=50&" in url

                total = len(hub.app.hub.catalog.placed("tools"))
                await page.route(first_page, one_of_them)
                await page.get_by_test_id("tool-search").fill("")
                await expect(page.locator(".toolresults p")).to_contain_text(f"1 of {total}")
                await page.get_by_test_id("show-all").click()
                await expect(page.locator(".toolresults li")).to_have_count(total)
                await expect(page.get_by_test_id("show-all")).to_have_count(0)
                await page.unroute(first_page)
                # find a tool and call it from the generated form
                await page.get_by_test_id("tool-search").fill("echo a message")
                await page.get_by_test_id("tool-alpha__echo").click()
                await page.get_by_test_id("call-form").locator("input[name=message]").fill("from the browser")
                await page.get_by_test_id("call").click()
                await expect(page.get_by_test_id("call-result")).to_contain_text("from the browser")
                await page.screenshot(path=artifacts / "tools.png")
                # the live calls view shows it
                await page.get_by_test_id("tab-calls").click()
                await expect(page.get_by_test_id("calls")).to_contain_text("echo")
                await page.screenshot(path=artifacts / "calls.png")
                # edit a preset
                await page.get_by_test_id("tab-presets").click()
                await page.get_by_test_id("preset-name").fill("team")
                await page.get_by_test_id("preset-filter").fill("alpha")
                await page.get_by_test_id("preset-save").click()
                await expect(page.get_by_test_id("preset-team")).to_contain_text("alpha")
                assert hub.app.hub.presets == {"team": "alpha"}
                await page.screenshot(path=artifacts / "presets.png")
                await page.get_by_test_id("tab-logs").click()
                await page.screenshot(path=artifacts / "logs.png")
                # the key is in this tab's sessionStorage, never in a cookie (a host's cookies reach every
                # port: another local server would get it)
                assert await page.context.cookies() == []
                assert await page.evaluate("sessionStorage.getItem('onemcp-console-key')") == admin
                # without the key nothing is answered, whatever the page: the API wants the bearer key
                status = await page.evaluate(
                    "fetch('/api/v1/servers/alpha/restart', {method: 'POST'}).then(r => r.status)"
                )
                assert status == 401
                # another tab (another browser context): signs in again
                other = await browser.new_page()
                await other.goto(f"{hub.base}/ui/")
                await expect(other.locator("input[name=key]")).to_be_visible()
                # revoking the key signs the console out at its next request: here the 3 s refresh's (a
                # click on a tab raced it, and waited 30 s for a tab the sign-out had taken away)
                store.revoke(admin.split("_")[1])
                await expect(page.locator("main.login .error")).to_contain_text("Signed out", timeout=10_000)
                assert await page.evaluate("sessionStorage.getItem('onemcp-console-key')") is None
            finally:
                await browser.close()


async def test_the_page_and_csrf_over_plain_http(tmp_path: Path) -> None:
    """The same rules without a browser: the page needs no key (the key is the API's to check, on every
    request); a hub without auth asks browsers' changes for the page's token."""
    import re

    import httpx

    path = tmp_path / "mcp.json"
    doc = config()
    path.write_text(json.dumps(doc))
    store = KeyStore(tmp_path / "keys.db")
    admin = store.create("admin", ["admin"])
    with anyio.fail_after(DEADLINE):
        async with running_hub(doc, config_path=path) as hub, httpx.AsyncClient(base_url=hub.base) as http:
            r = await http.get("/ui/")
            assert r.status_code == 200 and 'name="auth" content="key"' in r.text and "set-cookie" not in r.headers
            assert re.search(r'name="csrf" content=""', r.text)  # a hub with auth: no token to hand out
            r = await http.get("/ui/login")  # the old sign-in address: the page
            assert r.status_code == 303 and r.headers["location"] == "/ui/"
            assert (await http.post("/ui/login", data={"key": admin})).status_code == 404  # no form posts a key
            assert (await http.get("/api/v1/servers")).status_code == 401
            bearer = {"authorization": f"Bearer {admin}"}
            browser = {"origin": hub.base, "sec-fetch-site": "same-origin"}
            assert (await http.post("/api/v1/reload", headers={**browser, **bearer})).status_code == 200
            store.revoke(admin.split("_")[1])  # revoking the key ends the console's access
            assert (await http.get("/api/v1/servers", headers=bearer)).status_code == 401
            script = await http.get("/ui/static/console.js")
            assert script.status_code == 200 and script.headers["x-content-type-options"] == "nosniff"
            assert (await http.get("/api/v1/servers")).headers["x-content-type-options"] == "nosniff"
            assert (await http.get("/ui/static/../api.py")).status_code == 404
            # a browser's icon: the page names one, and /favicon.ico (asked by any page) is no 404
            assert '<link rel="icon" href="/ui/static/favicon.svg"' in (await http.get("/ui/")).text
            assert (await http.get("/ui/static/favicon.svg")).headers["content-type"] == "image/svg+xml"
            assert (await http.get("/favicon.ico")).status_code == 204
    open_doc = {"mcpServers": config()["mcpServers"]}
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "mcp.json").write_text(json.dumps(open_doc))
    with anyio.fail_after(DEADLINE):
        async with (
            running_hub(open_doc, config_path=tmp_path / "open" / "mcp.json") as hub,
            httpx.AsyncClient(base_url=hub.base) as http,
        ):
            page = (await http.get("/ui/")).text
            found = re.search(r'name="csrf" content="([^"]+)"', page)
            assert found is not None and 'name="auth" content="none"' in page
            browser = {"origin": hub.base, "sec-fetch-site": "same-origin"}
            assert (await http.post("/api/v1/reload", headers=browser)).status_code == 403
            assert (await http.post("/api/v1/reload", headers={**browser, "x-onemcp-csrf": "guess"})).status_code == 403
            ok = await http.post("/api/v1/reload", headers={**browser, "x-onemcp-csrf": found.group(1)})
            assert ok.status_code == 200


async def test_the_console_keeps_working_through_what_a_live_hub_does(tmp_path: Path) -> None:
    """Hunt s28, on a hub without auth: a tool entry the page cannot read, a description with no
    place to break, the CSRF token of a hub that restarted, an event stream that was cut, the Logs
    filter, a server disabled while its tools are listed and a preset name the URL cannot carry; then
    an upstream's bidi override shown escaped, a boolean argument sent false, an argument named
    `__proto__` and the "saved NAME" message."""
    from playwright.async_api import Route, async_playwright, expect

    fx = fixture_command()
    servers = {
        "alpha": {"command": fx[0], "args": [*fx[1:], "--name", "alpha"]},
        "beta": {"command": fx[0], "args": [*fx[1:], "--name", "beta", "--echo-description", "W" * 3000]},
    }
    doc = {"mcpServers": servers}
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(doc))

    async def spoil(route: Route) -> None:  # one entry the page cannot take at face value, before a good one
        odd = {"name": "odd", "description": {"x": 1}, "tokens": [], "inputSchema": {"required": 5, "properties": 1}}
        good = {"name": "alpha__echo", "description": "Echo", "inputSchema": {"type": "object"}}
        properties = {"__proto__": {"type": "string"}, "flag": {"type": "boolean"}}
        flags = {"name": "flags", "description": "report\u202eexe.txt", "inputSchema": {"properties": properties}}
        await route.fulfill(json={"tools": [odd, flags, good], "total": 3})

    sent: list[Any] = []

    async def answer(route: Route) -> None:  # what the form sends; a result with a bidi override and a terminal code
        sent.append(json.loads(route.request.post_data or "null"))
        await route.fulfill(json={"result": {"content": [{"type": "text", "text": f"ok {len(sent)}\u202e\x1b[31m"}]}})

    with anyio.fail_after(DEADLINE):
        async with running_hub(doc, config_path=path) as hub, async_playwright() as pw:
            import httpx

            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                await page.route("**/api/v1/tools?*", spoil)
                await page.goto(f"{hub.base}/ui/")
                await expect(page.get_by_test_id("server-beta")).to_contain_text("ready")
                # Tools: the bad entry is drawn as text; every other one can still be found
                await page.get_by_test_id("tab-tools").click()
                await page.get_by_test_id("tool-search").fill("echo a message")
                await expect(page.get_by_test_id("tool-alpha__echo")).to_be_visible()
                await page.get_by_test_id("tool-odd").click()
                await expect(page.locator(".tooldetail")).to_contain_text('{"x":1}')
                # an upstream's bidi override or terminal code is shown escaped, as the TUI does, never raw
                await page.get_by_test_id("tool-flags").click()
                await expect(page.locator(".tooldetail")).to_contain_text("report\\u202eexe.txt")
                await expect(page.locator(".tooldetail")).not_to_contain_text("\u202e")
                # the form has the property named __proto__ and sends it; a boolean is unset, true or false
                await page.route("**/api/v1/tools/flags/call", answer)
                form = page.get_by_test_id("call-form")
                await form.locator('input[name="__proto__"]').fill("p")
                await form.locator("select[name=flag]").select_option("false")
                await page.get_by_test_id("call").click()
                await expect(page.get_by_test_id("call-result")).to_contain_text("ok 1\\u202e\\u001b[31m")
                await form.locator("select[name=flag]").select_option("")
                await page.get_by_test_id("call").click()
                await expect(page.get_by_test_id("call-result")).to_contain_text("ok 2")
                assert sent == [{"arguments": {"__proto__": "p", "flag": False}}, {"arguments": {"__proto__": "p"}}]
                await page.unroute("**/api/v1/tools?*", spoil)
                # a 3000-character word in a description does not push the form off the screen
                await page.get_by_test_id("tool-search").fill("echo")
                await page.get_by_test_id("tool-beta__echo").click()
                width = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert width <= 0, width
                # the hub restarted (a new CSRF token): the call still goes through, with the page's new token
                hub.app.console._open_csrf = "after-a-restart"
                await page.get_by_test_id("call-form").locator("input[name=message]").fill("after restart")
                await page.get_by_test_id("call").click()
                await expect(page.get_by_test_id("call-result")).to_contain_text("after restart")
                # a server disabled while its tools are listed: the list is asked again
                await expect(page.get_by_test_id("tool-beta__echo")).to_be_visible()
                async with httpx.AsyncClient(base_url=f"{hub.base}/api/v1") as http:
                    assert (await http.post("/servers/beta/disable")).status_code == 200
                await expect(page.get_by_test_id("tool-beta__echo")).to_have_count(0)
                await expect(page.get_by_test_id("tool-echo")).to_be_visible()  # one server left: no prefix
                # the event stream is cut (a proxy's timeout): after the reconnect, no call is shown twice
                await page.get_by_test_id("tab-calls").click()
                rows = page.get_by_test_id("calls").locator("tbody tr")
                await expect(rows).to_have_count(1)
                bus = hub.app.hub.bus
                cut = set(bus._watchers)
                for watcher in cut:  # the stream ends, as when a proxy in between drops it
                    watcher.close()
                while not set(bus._watchers) - cut:
                    await anyio.sleep(0.05)  # allowed-sleep: polling with a deadline (the page reconnects in 3 s)
                async with httpx.AsyncClient(base_url=f"{hub.base}/api/v1") as http:
                    await http.post("/tools/echo/call", json={"arguments": {"message": "again"}})
                await expect(rows).to_have_count(2)
                await page.evaluate("() => new Promise((r) => setTimeout(r, 100))")  # a replay would be drawn by now
                await expect(rows).to_have_count(2)
                # Logs: the filter filters, and what is typed stays while lines arrive
                await page.get_by_test_id("tab-logs").click()
                bus.publish("log", level="info", logger="t", message="needle one")
                bus.publish("log", level="info", logger="t", message="haystack two")
                await expect(page.get_by_test_id("logs")).to_contain_text("haystack two")
                await page.get_by_test_id("log-filter").fill("needle")
                await expect(page.get_by_test_id("logs")).not_to_contain_text("haystack")
                bus.publish("log", level="info", logger="t", message="needle three \u2066")
                await expect(page.get_by_test_id("logs")).to_contain_text("needle three \\u2066")
                await expect(page.get_by_test_id("log-filter")).to_have_value("needle")
                await expect(page.get_by_test_id("logs")).not_to_contain_text("haystack")
                # a preset name the API refuses: its rule, not a routing error
                await page.get_by_test_id("tab-presets").click()
                await page.get_by_test_id("preset-name").fill("x/y")
                await page.get_by_test_id("preset-filter").fill("alpha")
                await page.get_by_test_id("preset-save").click()
                await expect(page.get_by_test_id("preset-message")).to_contain_text("a preset name is 1-64 letters")
                # a saved preset says so (the redraw after saving dropped the message)
                await page.get_by_test_id("preset-name").fill("team")
                await page.get_by_test_id("preset-save").click()
                await expect(page.get_by_test_id("preset-team")).to_contain_text("alpha")
                await expect(page.get_by_test_id("preset-message")).to_have_text("saved team")
            finally:
                await browser.close()
