"""The ``onemcp-demo`` upstream (shipped for the starter config), built on the demo kit.

Boundary: this module speaks only the handshake-era protocol (2024-11-05 .. 2025-11-25: ``initialize``
first, the server echoes the client's ``protocolVersion`` when it supports it, else answers
``2025-11-25``) as raw JSON-RPC 2.0 encoded with orjson. It never imports the ``mcp`` SDK (start-up
speed, and the SDK would drop unknown fields) and knows nothing about the hub. Three layers:

* ``McpServer``: the behaviour, a table of tools, prompts, resources and templates plus method
  dispatch. It is transport-free and can be reused (the test fixture server builds on it).
* ``Connection``: JSON-RPC bookkeeping for one client: requests run concurrently as tasks, responses
  to server-initiated requests are matched, ``notifications/cancelled`` cancels a request so it is
  never answered. Outgoing messages go through caller-supplied ``Send`` callables, so a transport
  decides which stream a reply or a request-related notification travels on.
* ``serve_stdio``: newline-delimited JSON on stdin/stdout; exits cleanly on stdin EOF.
"""

from __future__ import annotations

from typing import Final

from onemcp.demo.kit import JsonObject, McpServer, Prompt, PromptArgument, Resource, Tool, text_result
from onemcp.demo.peer import Call
from onemcp.demo.stdio import run

# --- the demo upstream -------------------------------------------------------------------------------------

DEMO_README: Final = """# onemcp demo server

A small upstream shipped with onemcp so the starter configuration works out of the box.
Tools: echo, add, word_count. Prompt: greeting. Resource: demo://readme (this text).
"""


def _number_text(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


async def _echo(call: Call, args: JsonObject) -> JsonObject:
    return text_result(args["text"])


async def _add(call: Call, args: JsonObject) -> JsonObject:
    total = args["a"] + args["b"]
    return text_result(_number_text(total), structured={"sum": total})


async def _word_count(call: Call, args: JsonObject) -> JsonObject:
    count = len(args["text"].split())
    return text_result(str(count), structured={"count": count})


def _greeting(args: dict[str, str]) -> list[JsonObject]:
    text = f"Please write a short, friendly greeting for {args['name']}."
    return [{"role": "user", "content": {"type": "text", "text": text}}]


def build_demo_server() -> McpServer:
    server = McpServer(
        "onemcp-demo",
        instructions="A demo server bundled with onemcp: echo text, add numbers, count words.",
    )
    text_arg = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    server.add_tool(Tool("echo", "Return the given text unchanged.", _echo, text_arg))
    server.add_tool(
        Tool(
            "add",
            "Add two numbers.",
            _add,
            {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
            output_schema={"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]},
        )
    )
    server.add_tool(
        Tool(
            "word_count",
            "Count the whitespace-separated words in a text.",
            _word_count,
            text_arg,
            output_schema={
                "type": "object",
                "properties": {"count": {"type": "integer"}},
                "required": ["count"],
            },
        )
    )
    server.add_prompt(
        Prompt(
            "greeting",
            "Ask for a greeting for someone.",
            _greeting,
            [PromptArgument("name", "Who to greet", True)],
        )
    )
    server.add_resource(Resource("demo://readme", "readme", "text/markdown", text=DEMO_README, description="About"))
    return server


def main() -> None:
    run(build_demo_server())


if __name__ == "__main__":
    main()
