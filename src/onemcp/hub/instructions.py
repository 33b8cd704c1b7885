"""The hub's `instructions`: a summary of the servers a client sees, then each one's own.

Rendered from a template (built in, or `onemcp.instructions` / `instructionsFile`) with the
fields {count}, {naming}, {summary} and {servers}; each server's instructions (or its
config's override) sit in a `<server name="...">` block.
"""

from __future__ import annotations

import logging

from onemcp.catalog.catalog import Catalog
from onemcp.catalog.reach import Reach
from onemcp.config.model import HubConfig
from onemcp.observability.redact import one_line, printable
from onemcp.upstream.pool import Pool

log = logging.getLogger("onemcp.hub")

DEFAULT_INSTRUCTIONS = """This is onemcp, a hub serving {count} MCP server(s) as one. {naming}
{summary}

{servers}"""


SEARCH_NOTE = (
    "Tools are found by search: call `search_tools` with what you want to do, then call the tool it "
    "names directly (or through `call_tool`); `get_tool_schema` shows a tool's full input schema."
)


MAX_TITLE = 100  # characters of a server's title in the summary
MAX_SERVER_TEXT = 16 * 1024  # characters of a server's instructions


def _contained(text: str, limit: int = MAX_SERVER_TEXT) -> str:
    """A server's text as it may stand in the hub's: no tag at all (every `<` is written `&lt;`, so
    neither `</server>` nor `< /server>` closes its block or opens another's), no terminal codes, bounded."""
    text = printable(text.strip())
    if len(text) > limit:
        text = text[:limit] + " [cut]"
    return text.replace("<", "&lt;")


def render_instructions(config: HubConfig, catalog: Catalog, pool: Pool, reach: Reach, *, search: bool = False) -> str:
    """As `reach` sees the hub: the servers it touches that the catalog serves, with the counts its lists
    show; a server's own instructions only where it reaches the server whole (a `tool:` grant is that
    tool, not its server)."""
    summary = []
    sections = []
    shown = catalog.shown_counts(reach)
    for name in pool.slots:
        if not reach.touches(name) or not catalog.serves(name):  # not: one a reload removed, its calls draining
            continue
        conn = pool.get(name)
        slot = pool.slots.get(name)
        server = config.servers.get(name) or (slot.config if slot is not None else None)  # or a template instance
        if conn is None or server is None:
            continue
        counts = shown.get(name, {"tools": 0, "prompts": 0})
        title = _contained(str(conn.server_info.get("title") or conn.server_info.get("name") or name), MAX_TITLE)
        title = one_line(title)
        summary.append(f"- {name}: {title} ({conn.state}; {counts['tools']} tools, {counts['prompts']} prompts)")
        text = server.instructions if server.instructions is not None else conn.instructions
        if text and reach.whole(name):
            sections.append(f'<server name="{name}">\n{_contained(text)}\n</server>')
    naming = (
        f"Tool and prompt names are `<server>{catalog.codec.separator}<name>`; resource URIs are `<server>+<uri>`."
        if catalog.prefixed
        else "Names are the servers' own."
    )
    if search:
        summary.append(SEARCH_NOTE)
    fields = {
        "count": str(len(summary) - search),
        "summary": "\n".join(summary),
        "naming": naming,
        "servers": "\n\n".join(sections),
    }
    template = config.hub.instructions or DEFAULT_INSTRUCTIONS
    if config.hub.instructions_file:
        try:
            with open(config.hub.instructions_file, encoding="utf-8") as f:
                template = f.read()
        except OSError as exc:
            log.warning("instructions template unreadable, using the default: %s", exc)
    try:
        return template.format_map(fields).strip()
    except (ValueError, IndexError, KeyError):
        return template.strip()  # not a template (stray braces): used as it is
