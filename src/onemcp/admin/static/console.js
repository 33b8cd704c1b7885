// onemcp console: draws the tabs from the admin API (/api/v1) and its event stream. No framework,
// no build step, nothing fetched from anywhere but the hub.
"use strict";
(function () {
  const API = "/api/v1";
  let csrf = document.querySelector('meta[name="csrf"]').content;  // this hub process's: a restart makes another
  const needsKey = document.querySelector('meta[name="auth"]').content === "key";
  const KEY = "onemcp-console-key";  // in this tab's sessionStorage only: no cookie reaches other ports or sites
  let key = sessionStorage.getItem(KEY) || "";
  let listening = null;  // the event stream's AbortController
  let lastEventId = "";  // the last event's SSE id: a reconnect asks only for what came after it
  const app = document.getElementById("app");
  const state = { tab: "overview", server: null, calls: [], logs: [], stats: {}, servers: [], tool: null };
  const BUCKET = 5000, BUCKETS = 36;

  // C0 and C1 controls, DEL, and the format characters that reorder or hide text (bidi marks, overrides
  // and isolates, zero-width characters, the byte order mark, tag characters): an upstream's text shows
  // them escaped (\u202e), as the TUI and the CLI do (observability/redact.py's set); new lines and tabs stay
  const HIDDEN = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u{e0000}-\u{e007f}]/gu;
  function visible(text) {
    return String(text).replace(HIDDEN, (c) => {
      if (c === "\r") return "\\r";
      const code = c.codePointAt(0);
      return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0")
        : code < 0x10000 ? "\\u" + code.toString(16).padStart(4, "0") : "\\U" + code.toString(16).padStart(8, "0");
    });
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "onclick" || k === "onsubmit" || k === "oninput") node[k] = v;
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(visible(child)));
    }
    return node;
  }

  function authorized(headers) {
    if (key) headers.authorization = "Bearer " + key;
    return headers;
  }
  async function freshCsrf() {
    // the hub restarted since this page loaded (a token is one process's): the page it serves now has the new one
    const page = await (await fetch(location.pathname, { credentials: "omit" })).text();
    const meta = new DOMParser().parseFromString(page, "text/html").querySelector('meta[name="csrf"]');
    return meta ? meta.content : "";
  }
  async function api(method, path, body, retried) {
    const headers = authorized({ accept: "application/json" });
    if (method !== "GET") { headers["content-type"] = "application/json"; if (csrf) headers["x-onemcp-csrf"] = csrf; }
    const response = await fetch(API + path, {
      method, headers, credentials: "omit", body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && needsKey) { signOut("Signed out: the key is no longer accepted."); throw new Error("signed out"); }
    const doc = await response.json().catch(() => ({ error: "HTTP " + response.status }));
    if (response.status === 403 && String(doc.error).includes("CSRF")) {
      const fresh = retried ? "" : await freshCsrf().catch(() => "");
      if (fresh && fresh !== csrf) { csrf = fresh; return api(method, path, body, true); }
      throw new Error("the hub refused this page's CSRF token (did it restart?): reload this page");
    }
    if (!response.ok) throw new Error(doc.error_description || doc.error || "HTTP " + response.status);
    return doc;
  }
  function str(value) {  // an upstream's text as text, whatever JSON it really sent
    return typeof value === "string" ? value : value === null || value === undefined ? "" : JSON.stringify(value);
  }

  // ------------------------------------------------------------------ signing in (the key stays in this tab)
  function signIn(error) {
    const input = el("input", { type: "password", name: "key", autocomplete: "off", autofocus: true });
    const form = el("form", { class: "login", onsubmit: async (e) => {
      e.preventDefault();
      key = input.value.trim();
      input.value = "";
      let response;
      try {
        response = await fetch(API + "/", { headers: authorized({ accept: "application/json" }), credentials: "omit" });
      } catch (err) {
        key = "";
        signIn("Not signed in: the hub cannot be reached (" + err.message + ").");
        return;
      }
      if (!response.ok) {
        const doc = await response.json().catch(() => ({}));
        key = "";
        const why = response.status === 403 ? "the key has neither admin nor operator scope" : (doc.error_description || "unknown or invalid key");
        signIn("Not signed in: " + why + ".");
        return;
      }
      sessionStorage.setItem(KEY, key);
      start();
    } }, el("label", {}, "API key (admin or operator scope)", input), el("button", { type: "submit" }, "Sign in"));
    app.replaceChildren(el("main", { class: "login" }, el("h1", {}, "onemcp"), form, el("p", { class: "error" }, error || "")));
  }
  function signOut(why) {
    key = "";
    sessionStorage.removeItem(KEY);
    if (listening) { listening.abort(); listening = null; }
    clearInterval(refresher);
    signIn(why);
  }

  // ------------------------------------------------------------------ live events
  function bucketOf(t) { return Math.floor(t / BUCKET); }
  function record(event) {
    if (event.kind === "call") {
      state.calls.unshift(event);
      state.calls.length = Math.min(state.calls.length, 500);
      const s = state.stats[event.server] || (state.stats[event.server] = {});
      const b = bucketOf(event.at * 1000);
      const cell = s[b] || (s[b] = { n: 0, ms: 0, errors: 0 });
      cell.n += 1; cell.ms += event.ms; if (event.outcome !== "ok") cell.errors += 1;
    } else if (event.kind === "log") {
      state.logs.unshift(event);
      state.logs.length = Math.min(state.logs.length, 1000);
    } else if (event.kind === "state") {
      refreshServers();
    }
  }
  async function listen() {
    // fetch, not EventSource: it can carry the key; reconnects after a pause, as EventSource would
    const controller = listening = new AbortController();
    while (listening === controller) {
      try {
        const headers = authorized({ accept: "text/event-stream" });
        if (lastEventId) headers["last-event-id"] = lastEventId;
        const response = await fetch(API + "/events", { headers, credentials: "omit", signal: controller.signal });
        if (response.status === 401 && needsKey) { signOut("Signed out: the key is no longer accepted."); return; }
        if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const lines = buffer.slice(0, cut).split("\n"); buffer = buffer.slice(cut + 2);
            const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
            if (!data) continue;  // a keep-alive comment
            const id = lines.find((l) => l.startsWith("id:"));
            if (id) lastEventId = id.slice(3).trim();
            record(JSON.parse(data));
            if (state.view && state.view.update && (state.tab === "calls" || state.tab === "logs")) state.view.update();
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
  function series(server, pick) {
    const now = bucketOf(Date.now());
    const s = state.stats[server] || {};
    const out = [];
    for (let b = now - BUCKETS + 1; b <= now; b++) out.push(pick(s[b] || { n: 0, ms: 0, errors: 0 }));
    return out;
  }
  function spark(values, label) {
    const max = Math.max(1, ...values);
    const w = 120, h = 24;
    const points = values.map((v, i) => `${(i * w) / (values.length - 1)},${h - (v / max) * (h - 2) - 1}`).join(" ");
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`); svg.setAttribute("class", "spark"); svg.setAttribute("aria-label", label);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points);
    svg.append(line);
    return svg;
  }

  // ------------------------------------------------------------------ tabs
  const TABS = [["overview", "Overview"], ["tools", "Tools"], ["calls", "Calls"], ["logs", "Logs"], ["presets", "Presets"]];
  function nav() {
    return el("nav", {}, el("strong", {}, "onemcp"),
      TABS.map(([id, label]) => el("button", { class: state.tab === id ? "tab on" : "tab", "data-testid": "tab-" + id,
        onclick: () => { state.tab = id; state.server = null; draw(); } }, label)),
      needsKey ? el("button", { class: "logout", "data-testid": "sign-out", onclick: () => signOut("Signed out.") }, "Sign out") : null);
  }
  function badge(s) { return el("span", { class: "badge " + s }, s); }

  function overview() {
    const rows = state.servers.map((s) => el("tr", { "data-testid": "server-" + s.name },
      el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); state.server = s.name; state.tab = "server"; draw(); } }, s.name)),
      el("td", {}, badge(s.state)), el("td", {}, s.transport || ""), el("td", {}, s.tools ?? "-"),
      el("td", {}, s.toolTokens ?? "-"), el("td", {}, s.restarts ?? 0),
      el("td", {}, spark(series(s.name, (c) => c.n / (BUCKET / 1000)), "requests per second")),
      el("td", {}, spark(series(s.name, (c) => (c.n ? c.ms / c.n : 0)), "latency ms")),
      el("td", { class: "error" }, s.lastError || "")));
    return el("section", {}, el("h2", {}, "Servers"),
      el("table", {}, el("thead", {}, el("tr", {}, ["Server", "State", "Transport", "Tools", "Tokens", "Restarts", "Requests/s (3 min)", "Latency", "Last error"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)));
  }

  async function serverPage() {
    const box = el("section", { "data-testid": "server-page" }, el("p", {}, "Loading…"));
    try {
      const s = await api("GET", "/servers/" + encodeURIComponent(state.server));
      const act = (what) => async () => {
        try { await api("POST", `/servers/${encodeURIComponent(s.name)}/${what}`); note(`${what}: ${s.name}`); }
        catch (e) { note(e.message, true); }
        setTimeout(() => { refreshServers(); if (state.tab === "server") draw(); }, 300);
      };
      box.replaceChildren(
        el("h2", {}, s.name, " ", badge(s.state)),
        el("div", { class: "actions" },
          el("button", { onclick: act("restart"), "data-testid": "restart" }, "Restart"),
          s.state === "disabled" ? el("button", { onclick: act("enable"), "data-testid": "enable" }, "Enable")
            : el("button", { onclick: act("disable"), "data-testid": "disable" }, "Disable")),
        el("dl", {}, [["Transport", s.transport], ["Era", s.era], ["Protocol", s.protocolVersion], ["PID", s.pid],
          ["Restarts", s.restarts], ["Breaker", s.breaker], ["Tools", s.tools], ["Tokens", s.toolTokens],
          ["Last error", s.lastError]].map(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "-")])),
        el("h3", {}, "Tools"), el("p", {}, (s.toolNames || []).join(", ") || "none"),
        el("h3", {}, "Recent failed calls"),
        el("ul", {}, (s.recentErrors || []).map((e) => el("li", {}, `${e.tool || e.method}: ${e.outcome} (${e.ms} ms)`))),
        el("h3", {}, "stderr (last lines)"), el("pre", { "data-testid": "stderr" }, (s.stderrTail || []).join("\n") || "(nothing)"));
    } catch (e) { box.replaceChildren(el("p", { class: "error" }, e.message)); }
    return box;
  }

  function field(name, spec, required) {
    const type = spec.type;
    const label = `${name}${required ? " *" : ""}${spec.description ? " – " + str(spec.description) : ""}`;
    let input;
    if (type === "boolean") {  // unset, true or false: a checkbox could not send false
      input = el("select", { name, "data-kind": "boolean" }, el("option", { value: "" }, "(unset)"),
        el("option", { value: "true" }, "true"), el("option", { value: "false" }, "false"));
    }
    else if (type === "integer" || type === "number") input = el("input", { type: "number", name, "data-kind": type, step: type === "integer" ? "1" : "any" });
    else if (type === "string" && Array.isArray(spec.enum)) input = el("select", { name, "data-kind": "string" }, el("option", { value: "" }, ""), spec.enum.map((v) => el("option", { value: v }, v)));
    else if (type === "string") input = el("input", { type: "text", name, "data-kind": "string" });
    else input = el("textarea", { name, "data-kind": "json", placeholder: "JSON" });
    return el("label", { class: "field" }, el("span", {}, label), input);
  }
  function readForm(form) {
    const args = {};
    for (const input of form.querySelectorAll("[data-kind]")) {
      const kind = input.dataset.kind;
      if (input.value === "") continue;
      const value = kind === "boolean" ? input.value === "true" : kind === "integer" || kind === "number" ? Number(input.value)
        : kind === "json" ? JSON.parse(input.value) : input.value;
      // an own property whatever the name: `args.__proto__ = v` would set the prototype (dropped from the JSON)
      Object.defineProperty(args, input.name, { value, enumerable: true, writable: true, configurable: true });
    }
    return args;
  }
  const PAGE = 50, MAX_TOOLS = 1000;  // tools a search shows first; the most the API gives (admin.api.MAX_LIMIT)
  function tools() {
    const results = el("div", { class: "toolresults" });
    const detail = el("div", { class: "tooldetail" });
    let asked = 0;  // answers can arrive out of order: only the latest question's is drawn
    let limit = PAGE;  // tools shown; "show all" asks for the API's most
    async function search(q) {
      const mine = ++asked;
      try {
        const doc = await api("GET", `/tools?limit=${limit}&q=` + encodeURIComponent(q));
        if (mine !== asked) return;
        const more = doc.tools.length < doc.total && limit < MAX_TOOLS
          ? el("button", { "data-testid": "show-all", onclick: () => { limit = MAX_TOOLS; search(q); } }, "show all") : "";
        results.replaceChildren(el("p", {}, `${doc.tools.length} of ${doc.total} `, more),
          el("ul", {}, doc.tools.map((t) => el("li", {}, el("a", { href: "#", "data-testid": "tool-" + str(t.name),
            onclick: (e) => { e.preventDefault(); showTool(t); } }, str(t.name)), ` (${str(t.tokens) || "?"} tokens) `, str(t.description).slice(0, 120)))));
      } catch (e) { if (mine === asked) results.replaceChildren(el("p", { class: "error" }, e.message)); }
    }
    function showTool(t) {
      const schema = t.inputSchema && typeof t.inputSchema === "object" ? t.inputSchema : {};
      const required = new Set(Array.isArray(schema.required) ? schema.required : []);
      const properties = schema.properties && typeof schema.properties === "object" ? schema.properties : {};
      const out = el("pre", { "data-testid": "call-result" });
      const form = el("form", { "data-testid": "call-form", onsubmit: async (e) => {
        e.preventDefault();
        out.textContent = "calling…";
        try {
          const doc = await api("POST", `/tools/${encodeURIComponent(t.name)}/call`, { arguments: readForm(form) });
          out.textContent = visible(JSON.stringify(doc.result ?? doc.error, null, 2) + `\n(${doc.ms} ms)`);
        } catch (err) { out.textContent = visible("error: " + err.message); }
      } }, Object.entries(properties).map(([name, spec]) => field(name, spec && typeof spec === "object" ? spec : {}, required.has(name))),
        el("button", { type: "submit", "data-testid": "call" }, "Call"));
      detail.replaceChildren(el("h3", {}, str(t.name)), el("p", {}, str(t.description)), form, out);
    }
    const box = el("input", { type: "search", placeholder: "What do you want to do?", "data-testid": "tool-search",
      oninput: (e) => search(e.target.value) });
    search("");
    const view = el("section", {}, el("h2", {}, "Tools"), box, el("div", { class: "split" }, results, detail));
    view.update = () => search(box.value);  // the servers changed, or the tab is shown again: ask again
    return view;
  }

  // the live tabs: drawn once, then `update` refills their rows as events arrive (a selection, the filter being typed stay)
  function toolsTab() {  // built once (what is typed stays); asked again when shown again: the tools may have changed meanwhile
    if (!state.toolsView) return (state.toolsView = tools());
    if (!app.contains(state.toolsView)) state.toolsView.update();
    return state.toolsView;
  }
  function calls() {
    const body = el("tbody");
    const view = el("section", {}, el("h2", {}, "Calls (live)"),
      el("table", { "data-testid": "calls" }, el("thead", {}, el("tr", {}, ["Time", "Server", "Tool", "Principal", "ms", "Outcome"].map((h) => el("th", {}, h)))), body));
    view.update = () => body.replaceChildren(...state.calls.slice(0, 200).map((c) => el("tr", {},
      el("td", {}, new Date(c.at * 1000).toLocaleTimeString()), el("td", {}, c.server), el("td", {}, c.tool || c.method),
      el("td", {}, c.principal), el("td", {}, c.ms), el("td", {}, badge(c.outcome)))));
    view.update();
    return view;
  }
  function logs() {
    const pre = el("pre", { class: "logs", "data-testid": "logs" });
    const filter = el("input", { type: "search", placeholder: "filter", value: state.logFilter || "", "data-testid": "log-filter",
      oninput: () => { state.logFilter = filter.value; view.update(); } });
    const view = el("section", {}, el("h2", {}, "Logs (live)"), filter, pre);
    view.update = () => {
      const wanted = (state.logFilter || "").toLowerCase();
      pre.textContent = visible(state.logs.map((l) => `${new Date(l.at * 1000).toLocaleTimeString()} ${l.level} ${l.logger}: ${l.message}`)
        .filter((line) => !wanted || line.toLowerCase().includes(wanted)).slice(0, 500).join("\n"));
    };
    view.update();
    return view;
  }
  async function presets() {
    const box = el("section", {}, el("h2", {}, "Presets"));
    let doc = { presets: {} };
    try { doc = await api("GET", "/presets"); } catch (e) { box.append(el("p", { class: "error" }, e.message)); }
    const msg = el("p", { "data-testid": "preset-message" }, state.presetNote || "");  // "saved NAME" outlives the redraw
    state.presetNote = "";
    const form = el("form", { "data-testid": "preset-form", onsubmit: async (e) => {
      e.preventDefault();
      const data = Object.fromEntries(new FormData(form).entries());
      const name = data.name; delete data.name;
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) {  // the API's rule (config/presets.py): else the URL would not even reach it
        msg.textContent = "error: a preset name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit";
        return;
      }
      try { await api("PUT", "/presets/" + encodeURIComponent(name), data); state.presetNote = "saved " + name; draw(); }
      catch (err) { msg.textContent = visible("error: " + err.message); }
    } }, el("input", { name: "name", placeholder: "name", "data-testid": "preset-name" }),
      el("input", { name: "filter", placeholder: "filter (e.g. dev and not slow)", "data-testid": "preset-filter" }),
      el("input", { name: "description", placeholder: "description" }),
      el("select", { name: "exposure" }, ["", "full", "search", "auto"].map((v) => el("option", { value: v }, v || "hub's exposure"))),
      el("button", { type: "submit", "data-testid": "preset-save" }, "Save"));
    box.append(el("table", {}, el("tbody", {}, Object.entries(doc.presets).map(([name, p]) => el("tr", { "data-testid": "preset-" + name },
      el("td", {}, name), el("td", {}, p.filter), el("td", {}, p.description || ""), el("td", {}, p.exposure || ""),
      el("td", {}, el("button", { onclick: async () => { try { await api("DELETE", "/presets/" + encodeURIComponent(name)); draw(); } catch (e) { msg.textContent = visible(e.message); } } }, "Delete")))))),
      form, msg);
    return box;
  }

  let noteTimer = null;
  function note(text, bad) {
    let n = document.getElementById("note");
    if (!n) { n = el("div", { id: "note" }); document.body.append(n); }
    n.textContent = visible(text); n.className = bad ? "bad" : "";
    clearTimeout(noteTimer); noteTimer = setTimeout(() => { n.textContent = ""; }, 4000);
  }

  let serversSeen = "";
  async function refreshServers() {
    try { state.servers = (await api("GET", "/servers")).servers; } catch (e) { note(e.message, true); }
    const seen = JSON.stringify(state.servers.map((s) => [s.name, s.state, s.tools]));
    if (seen !== serversSeen && state.toolsView && state.tab === "tools") state.toolsView.update();  // their tools changed
    serversSeen = seen;
    if (state.tab === "overview") draw();
  }
  async function draw() {
    if (needsKey && !key) return;  // signed out: the sign-in form stays
    const tab = state.tab, server = state.server;
    const view = tab === "overview" ? overview() : tab === "server" ? await serverPage()
      : tab === "tools" ? toolsTab() : tab === "calls" ? calls()
      : tab === "logs" ? logs() : await presets();
    if (needsKey && !key) return;  // signed out while this page loaded
    if (tab !== state.tab || server !== state.server) return;  // the user went elsewhere while this page loaded: theirs is drawn
    if (view === state.toolsView && app.contains(view)) return;  // in place already: moving it would drop the focus and what is being typed
    state.view = view;
    app.replaceChildren(nav(), el("main", {}, view));
  }
  let refresher = null;
  function start() {
    listen();
    refreshServers().then(draw);
    clearInterval(refresher);
    refresher = setInterval(refreshServers, 3000);
  }
  if (needsKey && !key) signIn(""); else start();
})();
