"""`/me`: the page where a person keeps their own `${user:NAME}` values in a browser.

One page and its script, no build step: the person types the key their MCP client uses (no field on
a hub without auth), the script lists what `GET /me/secrets` says (the names the servers they reach
take, which are set and when; never a value) and stores or forgets a value with `PUT`/`DELETE`
there, with the key as a bearer credential. The key lives in the page's memory only: no cookie, no
session, nothing a cross-site page could ride (the endpoint takes no ambient credential), and gone
when the tab closes. Every rule is the endpoint's (`downstream.my_secrets`), and so is every error
shown. Owns the page; the script is inline, allowed by a fresh nonce in the page's CSP.
"""

from __future__ import annotations

import secrets
from html import escape

from onemcp.auth.server.consent import HTML, KEY_FIELD, PAGE_HEADERS, page
from onemcp.http import asgi
from onemcp.http.asgi import Send

PATHS = ("/me", "/me/")

# Builds every node with textContent: no value from the server is ever parsed as HTML.
SCRIPT = r"""
(() => {
  const form = document.getElementById("signin"), list = document.getElementById("values");
  const say = document.getElementById("say"), askKey = form.dataset.askKey === "1";
  const endpoint = location.pathname.replace(/\/+$/, "") + "/secrets";
  let key = "";
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const tell = (text, bad) => { say.textContent = text; say.className = bad ? "error" : "note"; };
  // the endpoint's {"error": "..."}, the gate's OAuth error, or a JSON-RPC error object of the hub's
  const why = (doc, status) => (typeof doc.error === "string" ? (doc.error_description || doc.error)
    : (doc.error && doc.error.message) || ("refused: HTTP " + status));
  async function call(method, path, body) {
    const headers = {};
    if (askKey) headers.authorization = "Bearer " + key;
    if (body !== undefined) headers["content-type"] = "application/json";
    let r;
    try {
      r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                             credentials: "omit", cache: "no-store"});
    } catch (e) {
      return [0, {error: "the hub cannot be reached: " + e.message}];
    }
    let doc = {};
    try { doc = await r.json(); } catch (e) { doc = {error: "the hub answered HTTP " + r.status}; }
    return [r.status, doc];
  }
  async function show() {
    const [status, doc] = await call("GET", endpoint);
    list.replaceChildren();
    if (status !== 200) { tell(why(doc, status), true); return false; }
    const names = Object.entries(doc.names || {});
    list.append(el("p", "Signed in as " + doc.principal + ".", "note"));
    if (doc.shared) {
      list.append(el("p", doc.principal + " stands for several people here, so only an operator sets its values "
                          + "(`onemcp auth secret set`): they are listed, not changed, on this page.", "note"));
    }
    if (!names.length) list.append(el("p", "No server you reach takes a value of yours."));
    for (const [name, info] of names) {
      const row = el("form", undefined, "value");
      row.append(el("h2", name));
      const where = info.servers.length ? "taken by " + info.servers.join(", ") : "no server takes it now";
      const when = info.set ? "set " + info.updated : "not set";
      row.append(el("p", when + "; " + where, "note"));
      const input = el("input");
      Object.assign(input, {type: "password", autocomplete: "off", name: "value"});
      input.setAttribute("aria-label", "new value for " + name);
      const save = el("button", "Save");
      save.type = "submit";
      if (info.servers.length && !doc.shared) row.append(input, save);
      if (info.set && !doc.shared) {
        const forget = el("button", "Forget");
        forget.type = "button";
        forget.addEventListener("click", async () => {
          const [s, d] = await call("DELETE", endpoint + "/" + encodeURIComponent(name));
          if (await show()) tell(s === 200 ? name + " forgotten." : why(d, s), s !== 200);
        });
        row.append(forget);
      }
      row.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const [s, d] = await call("PUT", endpoint + "/" + encodeURIComponent(name), {value: input.value});
        input.value = "";
        if (s === 200) { if (await show()) tell(name + " saved: your next call uses it.", false); }
        else tell(why(d, s), true);
      });
      list.append(row);
    }
    return true;
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (askKey) { key = form.elements.key.value.trim(); form.elements.key.value = ""; }
    tell("", false);
    await show();
  });
})();
"""


async def serve(*, ask_key: bool, send: Send, method: str) -> None:
    """The page (`ask_key`: the hub has authentication, so the person signs in with their key)."""
    if method not in ("GET", "HEAD"):
        await asgi.send_bytes(send, 405, b"use GET\n", b"text/plain", [(b"allow", b"GET, HEAD")])
        return
    nonce = secrets.token_urlsafe(18)
    field = KEY_FIELD if ask_key else ""
    body = (
        "<h1>Your values for onemcp's servers</h1>"
        "<p class=note>Some servers run with a credential of your own (a token, an API key) that only your "
        "calls use. Set it here; it is kept encrypted by the hub and never shown again. The page keeps the key "
        "you sign in with in this tab's memory only (your browser may offer to remember it, as for any "
        "password field).</p>"
        f'<form id=signin method=post data-ask-key="{int(ask_key)}">{field}'
        "<button type=submit>Show my values</button></form>"
        "<p id=say class=note role=status></p><div id=values></div>"
        f'<script nonce="{escape(nonce)}">{SCRIPT}</script>'
    )
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; "
        f"script-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    headers = [(k, v) for k, v in PAGE_HEADERS if k != b"content-security-policy"]
    headers.append((b"content-security-policy", csp.encode()))
    await asgi.send_bytes(send, 200, page("Your values", body), HTML, headers)
