"""`onemcp tui`: the hub in the terminal (Textual), through the admin API, local or remote.

Owns the command (which hub: `--url`, else the running hub's runtime.json; `$ONEMCP_TOKEN` as
the credential) and the app: tabs Overview (per-server request-rate sparklines, a readiness
gauge), Servers (restart, enable, disable), Tools (search, call with JSON arguments), Requests
(live, from the event stream) and Logs (live, filtered); keyboard shortcuts in the footer.
Textual is imported only when the command runs. Does not talk MCP: only `/api/v1`.

What the hub reports is partly its upstreams' words (server errors, stderr, tool names and
descriptions, results, log lines): it reaches the screen as `rich.text.Text` (never parsed as
markup, so `[@click=...]` stays text) with its control and format characters escaped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict, deque
from typing import Any

from onemcp.cli import argtypes
from onemcp.cli.client.rpc import TOKEN_ENV
from onemcp.cli.target import TargetError, resolve
from onemcp.observability.redact import one_line, printable

BUCKET = 5.0  # seconds per sparkline bar
BARS = 36
REQUESTS = 500  # rows the Requests table keeps (the oldest go first)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: argparse.ArgumentParser) -> None:
    tui = sub.add_parser("tui", parents=[config], help="watch and steer the running hub in the terminal")
    tui.add_argument(
        "--url", type=argtypes.hub_url, help="the hub's MCP or base URL (default: the running hub's runtime.json)"
    )


def base_url(url: str) -> str:
    """The hub's base URL from its /mcp endpoint (or a base URL as it is)."""
    url = url.split("?", 1)[0].rstrip("/")
    return url[: -len("/mcp")] if url.endswith("/mcp") else url


def run(args: argparse.Namespace) -> int:
    try:
        target = resolve(config_flag=args.config, url=args.url)
    except TargetError as exc:
        print(f"onemcp: {exc}", file=sys.stderr)
        return 2
    if not _terminal():  # an agent's or a script's shell: the app would neither draw nor end (and spin a CPU)
        print(
            "onemcp: onemcp tui needs an interactive terminal (stdin and stdout); "
            "`onemcp status`, `onemcp mcp status` or `onemcp inspect` say the same in text",
            file=sys.stderr,
        )
        return 2
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    make_app(base_url(target.url), token).run()
    return 0


def _terminal() -> bool:
    return all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout))


class Refused(Exception):
    """The hub answered, and refused the credential (what to tell the operator is the message)."""


class Stats:
    """Calls per server in 5-second buckets, for the sparklines."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[int, int]] = defaultdict(dict)

    def add(self, server: str, at: float) -> None:
        bucket = int(at // BUCKET)
        per = self.buckets[server]
        per[bucket] = per.get(bucket, 0) + 1
        for old in [b for b in per if b < bucket - BARS]:
            del per[old]

    def series(self, server: str, now: float | None = None) -> list[float]:
        last = int((time.time() if now is None else now) // BUCKET)
        per = self.buckets.get(server, {})
        return [per.get(b, 0) / BUCKET for b in range(last - BARS + 1, last + 1)]


def refusal(status: int, doc: Any, has_token: bool) -> str | None:
    """What to say when the hub refused the credential (401, 403), else None: it is no "unreachable"."""
    if status not in (401, 403):
        return None
    error = (doc.get("error") if isinstance(doc, dict) else None) or f"HTTP {status}"
    if status == 403:
        return f"the hub refused the token: it lacks the operator or admin scope ({error})"
    if not has_token:
        return f"the hub wants a token: set ${TOKEN_ENV} to a key with the operator or admin scope ({error})"
    return f"the hub refused the token in ${TOKEN_ENV} ({error})"


def make_app(base: str, token: str | None) -> Any:
    """The Textual app for the hub at `base` (imports Textual)."""
    import httpx
    from rich.text import Text
    from textual import on, work
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.containers import Horizontal, VerticalScroll
    from textual.coordinate import Coordinate
    from textual.css.query import NoMatches
    from textual.widgets import (
        DataTable,
        Footer,
        Header,
        Input,
        Label,
        ProgressBar,
        RichLog,
        Sparkline,
        Static,
        TabbedContent,
        TabPane,
    )

    headers = {"authorization": f"Bearer {token}"} if token else {}

    def line(value: Any, limit: int | None = None) -> Text:
        """A value as one line of plain text: no markup, control characters escaped."""
        text = str(value)
        return Text(one_line(text if limit is None else text[:limit]))

    def lines(value: Any) -> Text:
        """Text of several lines (a stderr tail), each escaped."""
        return Text(printable(str(value)))

    class HubTui(App[None]):
        TITLE = "onemcp"
        CSS = """
        .spark-row { height: 3; }
        .spark-row Label { width: 24; }
        .spark-row Sparkline { width: 1fr; }
        #status { height: 3; }
        """
        BINDINGS = [
            Binding("1", "show('overview')", "Overview"),
            Binding("2", "show('servers')", "Servers"),
            Binding("3", "show('tools')", "Tools"),
            Binding("4", "show('requests')", "Requests"),
            Binding("5", "show('logs')", "Logs"),
            Binding("r", "server('restart')", "Restart"),
            Binding("e", "server('enable')", "Enable"),
            Binding("d", "server('disable')", "Disable"),
            Binding("q", "quit", "Quit"),
        ]

        def __init__(self) -> None:
            super().__init__()
            self.http = httpx.AsyncClient(base_url=f"{base}/api/v1", headers=headers, timeout=30)
            self.stats = Stats()
            self.servers: list[dict[str, Any]] = []
            self.request_rows: deque[Any] = deque()  # the Requests table's row keys, oldest first
            self.last_event_id = ""  # the event stream's: a reconnect is replayed only what came after it
            self.refused: str | None = None  # why the hub refused the token, while it does
            self.tool_names: list[str] = []

        def compose(self) -> ComposeResult:
            yield Header()
            with TabbedContent(initial="overview"):
                with TabPane("Overview", id="overview"):
                    yield Static("", id="status")
                    yield ProgressBar(total=1, show_eta=False, id="ready")
                    yield VerticalScroll(id="sparks")
                with TabPane("Servers", id="servers"):
                    yield DataTable(id="server-table", cursor_type="row")
                    yield Static("", id="server-detail")
                with TabPane("Tools", id="tools"):
                    yield Input(placeholder="search tools (what do you want to do?)", id="tool-search")
                    yield DataTable(id="tool-table", cursor_type="row")
                    yield Input(
                        placeholder='arguments as JSON, Enter calls the selected tool: {"message": "hi"}',
                        id="tool-args",
                    )
                    yield RichLog(id="tool-result", wrap=True)
                with TabPane("Requests", id="requests"):
                    yield DataTable(id="request-table")
                with TabPane("Logs", id="logs"):
                    yield Input(placeholder="filter", id="log-filter")
                    yield RichLog(id="log", wrap=True, max_lines=2000)
            yield Footer()

        async def on_mount(self) -> None:
            self.query_one("#server-table", DataTable).add_columns(
                "server", "state", "transport", "tools", "tokens", "restarts", "last error"
            )
            self.query_one("#tool-table", DataTable).add_columns("tool", "tokens", "description")
            self.query_one("#request-table", DataTable).add_columns(
                "time", "server", "tool", "principal", "ms", "outcome"
            )
            await self.refresh_servers()
            self.set_interval(2.0, self.refresh_servers)
            self.watch_events()
            await self.search_tools("")

        async def on_unmount(self) -> None:
            await self.http.aclose()

        def action_show(self, tab: str) -> None:
            self.query_one(TabbedContent).active = tab

        async def get(self, path: str, **params: str) -> Any:
            """The hub's JSON answer to a GET; `Refused` when it refused the token (a ValueError: no JSON)."""
            r = await self.http.get(path, params=params)
            try:
                doc = r.json()
            except ValueError:
                doc = None
            why = refusal(r.status_code, doc, token is not None)
            if why is not None:
                raise Refused(why)
            if doc is None:
                raise ValueError(f"the hub answered {r.status_code} without JSON")
            return doc

        async def refresh_servers(self) -> None:
            """Every 2 s (a timer): the servers table, the status line, the sparklines."""
            try:
                await self._refresh_servers()
            except NoMatches:  # the TUI is closing: its widgets went while the hub answered
                return

        async def _refresh_servers(self) -> None:
            try:
                self.servers = (await self.get("/servers"))["servers"]
            except Refused as exc:
                self.refused = str(exc)
                self.query_one("#status", Static).update(line(f"{base}: {exc}"))
                return
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                self.query_one("#status", Static).update(line(f"hub unreachable at {base}: {exc}"))
                return
            if self.refused is not None:  # accepted again (a new key, a fixed scope): watch again
                self.refused = None
                self.watch_events()
            table = self.query_one("#server-table", DataTable)
            keep = table.cursor_row
            table.clear()
            for s in self.servers:
                row = (
                    s["name"],
                    s.get("state"),
                    s.get("transport"),
                    s.get("tools", "-"),
                    s.get("toolTokens", "-"),
                    s.get("restarts", 0),
                )
                table.add_row(*[line(c) for c in row], line(s.get("lastError") or "", 60), key=s["name"])
            if self.servers:
                table.move_cursor(row=min(keep, len(self.servers) - 1))
            ready = sum(1 for s in self.servers if s.get("state") == "ready")
            self.query_one("#status", Static).update(line(f"{base}: {ready} of {len(self.servers)} servers ready"))
            bar = self.query_one("#ready", ProgressBar)
            bar.update(total=max(1, len(self.servers)), progress=ready)
            await self.draw_sparks()

        async def draw_sparks(self) -> None:
            box = self.query_one("#sparks", VerticalScroll)
            names = [s["name"] for s in self.servers]
            rows = {row.id: row for row in box.query(".spark-row")}
            for name in names:
                row_id = "spark-" + "".join(c if c.isalnum() else "_" for c in name)
                if row_id not in rows:
                    await box.mount(
                        Horizontal(
                            Label(line(name)),
                            Sparkline(self.stats.series(name), summary_function=max),
                            classes="spark-row",
                            id=row_id,
                        )
                    )
                else:
                    rows[row_id].query_one(Sparkline).data = self.stats.series(name)

        def selected_server(self) -> str | None:
            table = self.query_one("#server-table", DataTable)
            if not self.servers or table.cursor_row < 0:
                return None
            # the row's key is the name as the hub has it (the cell shows it escaped)
            key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
            return str(key) if key is not None else None

        async def action_server(self, what: str) -> None:
            name = self.selected_server()
            if name is None:
                return
            status, doc = await self.post(f"/servers/{name}/{what}")
            self.notify(
                one_line(f"{what} {name}: {'done' if status == 200 else doc.get('error')}"),
                severity="information" if status == 200 else "error",
                markup=False,
            )
            await self.refresh_servers()

        async def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
            """The hub's status and JSON answer; a hub that is gone or answers no JSON is an error to show,
            not the end of the TUI (it may be restarting)."""
            try:
                r = await self.http.post(path, json=body)
                doc = r.json()
            except httpx.HTTPError as exc:
                return 0, {"error": f"hub unreachable at {base}: {str(exc) or type(exc).__name__}"}
            except ValueError:
                return r.status_code, {"error": f"the hub answered {r.status_code} without JSON"}
            if not isinstance(doc, dict):
                return r.status_code, {"error": f"the hub answered {r.status_code} with {type(doc).__name__}"}
            return r.status_code, doc

        @on(DataTable.RowHighlighted, "#server-table")
        def show_server(self, event: DataTable.RowHighlighted) -> None:
            name = str(event.row_key.value) if event.row_key is not None else None
            found = next((s for s in self.servers if s["name"] == name), None)
            if found is not None:
                tail = "\n".join(one_line(str(entry)) for entry in found.get("stderrTail") or [])[-1500:]
                head = f"{name}: {found.get('state')}  pid {found.get('pid')}  era {found.get('era')}"
                detail = Text("\n").join([line(head), line(found.get("lastError") or ""), lines(tail)])
                self.query_one("#server-detail", Static).update(detail)

        @on(Input.Changed, "#tool-search")
        async def typed(self, event: Input.Changed) -> None:
            await self.search_tools(event.value)

        async def search_tools(self, text: str) -> None:
            try:
                tools = (await self.get("/tools", q=text, limit="100"))["tools"]
            except Refused as exc:
                self.query_one("#tool-result", RichLog).write(line(str(exc)))
                return
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                return
            table = self.query_one("#tool-table", DataTable)
            table.clear()
            self.tool_names = [t["name"] for t in tools]
            for t in tools:
                cells = (line(t["name"]), line(t.get("tokens")), line(t.get("description") or "", 80))
                table.add_row(*cells, key=t["name"])

        @on(Input.Submitted, "#tool-args")
        async def call_tool(self, event: Input.Submitted) -> None:
            table = self.query_one("#tool-table", DataTable)
            out = self.query_one("#tool-result", RichLog)
            if not self.tool_names or table.cursor_row < 0:
                out.write(Text("choose a tool first"))
                return
            name = str(table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value)
            try:
                arguments = json.loads(event.value or "{}")
            except ValueError as exc:
                out.write(line(f"not JSON: {exc}"))
                return
            _, doc = await self.post(f"/tools/{name}/call", {"arguments": arguments})
            result = json.dumps(doc.get("result", doc.get("error", doc)), indent=1)[:4000]  # ASCII: \u escapes
            out.write(lines(f"{one_line(name)}: {result}"))

        @work(exclusive=True, group="events")
        async def watch_events(self) -> None:
            import anyio

            while True:
                try:
                    resume = {"last-event-id": self.last_event_id} if self.last_event_id else {}
                    async with self.http.stream("GET", "/events", timeout=None, headers=resume) as r:
                        if r.status_code in (401, 403):  # not worth asking again each second: refresh_servers
                            self.refused = refusal(r.status_code, None, token is not None)  # restarts this
                            return
                        async for text in r.aiter_lines():
                            if text.startswith("id: "):
                                self.last_event_id = text[4:].strip()
                            elif text.startswith("data: "):
                                self.take_event(json.loads(text[6:]))
                except (httpx.HTTPError, ValueError):
                    pass
                except NoMatches:  # the TUI is closing: its widgets went while an event came
                    return
                await anyio.sleep(1.0)  # the hub went away: try again

        def take_event(self, event: dict[str, Any]) -> None:
            if event.get("kind") == "call":
                self.stats.add(str(event.get("server")), float(event.get("at", time.time())))
                table = self.query_one("#request-table", DataTable)
                when = time.strftime("%H:%M:%S", time.localtime(float(event.get("at", 0))))
                row = table.add_row(
                    line(when),
                    line(event.get("server")),
                    line(event.get("tool") or event.get("method")),
                    line(event.get("principal")),
                    line(event.get("ms")),
                    line(event.get("outcome")),
                )
                self.request_rows.append(row)
                while len(self.request_rows) > REQUESTS:
                    table.remove_row(self.request_rows.popleft())
            elif event.get("kind") == "log":
                text = f"{event.get('level')} {event.get('logger')}: {event.get('message')}"
                wanted = self.query_one("#log-filter", Input).value.strip().lower()
                if not wanted or wanted in text.lower():
                    self.query_one("#log", RichLog).write(line(text))

    return HubTui()
