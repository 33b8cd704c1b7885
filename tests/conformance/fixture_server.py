"""The MCP conformance suite's server fixture, on the official SDK: ``python tests/conformance/fixture_server.py``.

Boundary: a test double for ``tests/conformance/run.py``, not product code. It exposes exactly the tool,
prompt and resource names that the server scenarios of ``@modelcontextprotocol/conformance`` call
(``test_simple_text``, ``test://static-text``, ``test_simple_prompt``, ...), with the payloads each scenario
checks, so that a run against it shows what a correct server scores; the same run through the hub then shows
what the hub adds. Built on the low-level ``mcp.server.Server`` of ``mcp`` 2.3.0, which owns the transport
rules (sessions, SSE, DNS-rebinding protection, resumable streams with an event store).

Transports:

* ``--transport stdio`` (default): one connection on stdin/stdout, as the hub runs it.
* ``--transport http [--port N]``: Streamable HTTP on ``http://127.0.0.1:<port>/mcp`` (port 0 picks a free
  one); prints exactly one ``LISTENING http://127.0.0.1:<port>/mcp`` line to stdout once bound. Streams are
  resumable (in-memory event store, ``retry`` hint on priming events), which ``test_reconnection`` uses.

Both eras are targeted: the handshake-era scenarios (2025-11-25 and earlier) and the 2026-07-28 ones
(``--suite all --spec-version 2026-07-28`` of 0.2.0-alpha.12). The SDK serves both on one endpoint (and picks
per stdio connection from the first message), so every tool works in either era: on 2026-07-28 sampling,
elicitation and roots become input-required results (no server->client requests exist there) and the client
retries with ``inputResponses``; on the handshake era the same questions go out as live requests. Logs and
progress ride the call, ``subscriptions/listen`` is served, ``requestState`` is sealed and verified by the
SDK's ``RequestStateBoundary`` (so tampering is rejected), and the 2026-07-28 diagnostic tools exist:
``test_input_required_result_*``, ``test_missing_capability``, ``test_streaming_elicitation``,
``test_logging_tool``, ``test_x_mcp_header``, ``test_trigger_tool_change`` / ``test_trigger_prompt_change``
(which really add or remove a tool / prompt and announce it), and the prompt
``test_input_required_result_prompt``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import re
import socket
import struct
import sys
import warnings
import wave
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from io import BytesIO
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ServerEvent,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import JSONRPCMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

# Logging, client->server progress and friends are deprecated at 2026-07-28; this fixture serves the
# handshake era on purpose, so the SDK's per-call deprecation warnings are noise here.
warnings.simplefilter("ignore", MCPDeprecationWarning)

Ctx = ServerRequestContext[Any, Any]

RESOURCE_NOT_FOUND = -32002  # the handshake era's code; 2026-07-28 (SEP-2164) uses INVALID_PARAMS
INVALID_PARAMS = -32602
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
SERVER_NAME = "onemcp-conformance-fixture"
RETRY_INTERVAL_MS = 500
STEP_DELAY = 0.05


# --- media ----------------------------------------------------------------------------------------------------


def _png_1x1_red() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte 0, then one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    out = BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * 80)  # 10 ms of silence
    return out.getvalue()


PNG_B64 = base64.b64encode(_png_1x1_red()).decode()
WAV_B64 = base64.b64encode(_wav_silence()).decode()


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _image() -> types.ImageContent:
    return types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")


# --- tools ----------------------------------------------------------------------------------------------------

ToolResult = types.CallToolResult | types.InputRequiredResult
ToolFn = Callable[[Ctx, types.CallToolRequestParams], Awaitable[ToolResult]]

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}

JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

SEP1034_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Your name", "default": "John Doe"},
        "age": {"type": "integer", "description": "Your age", "default": 30},
        "score": {"type": "number", "description": "Your score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "Account status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verified?", "default": True},
    },
}

SEP1330_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
}

ELICITATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}


def _has_capability(ctx: Ctx, capability: types.ClientCapabilities) -> bool:
    return ctx.session.check_client_capability(capability)


def _is_modern(ctx: Ctx) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


async def _simple_text(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    return types.CallToolResult(content=[_text("This is a simple text response for testing.")])


async def _image_content(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    return types.CallToolResult(content=[_image()])


async def _audio_content(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    return types.CallToolResult(content=[types.AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")])


async def _embedded_resource(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    resource = types.TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return types.CallToolResult(content=[types.EmbeddedResource(type="resource", resource=resource)])


async def _multiple_content_types(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    resource = types.TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}),
    )
    return types.CallToolResult(
        content=[
            _text("Multiple content types test:"),
            _image(),
            types.EmbeddedResource(type="resource", resource=resource),
        ]
    )


async def _tool_with_logging(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    for step, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if step:
            await asyncio.sleep(STEP_DELAY)
        await _log(ctx, "info", message)
    return types.CallToolResult(content=[_text("Tool with logging executed successfully")])


async def _tool_with_progress(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    for step, progress in enumerate((0.0, 50.0, 100.0)):
        if step:
            await asyncio.sleep(STEP_DELAY)
        await ctx.session.report_progress(progress, 100.0, f"step {step + 1} of 3")
    return types.CallToolResult(content=[_text("Tool with progress executed successfully")])


class _Ask:
    """Asks the client for input in whichever way the connection's era allows.

    Handshake era: a live server->client request on this call's stream. 2026-07-28: no such requests exist,
    so the first call answers with an input-required result and the client retries with the answer under
    `inputResponses[key]`.
    """

    def __init__(self, ctx: Ctx, params: types.CallToolRequestParams) -> None:
        self.ctx = ctx
        self.params = params

    def pending(self, key: str, request: types.InputRequest) -> types.InputRequiredResult | None:
        """On 2026-07-28 without an answer yet: the input-required result to return; otherwise None."""
        if not _is_modern(self.ctx) or key in (self.params.input_responses or {}):
            return None
        return types.InputRequiredResult(input_requests={key: request}, request_state=f"awaiting:{key}")

    def answer(self, key: str) -> Any:
        return (self.params.input_responses or {})[key]


async def _sampling(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    if not _has_capability(ctx, types.ClientCapabilities(sampling=types.SamplingCapability())):
        return types.CallToolResult(is_error=True, content=[_text("The client does not support sampling")])
    prompt = str((params.arguments or {}).get("prompt", ""))
    sampling_params = types.CreateMessageRequestParams(
        messages=[types.SamplingMessage(role="user", content=_text(prompt))], max_tokens=100
    )
    ask = _Ask(ctx, params)
    pending = ask.pending("sampling", types.CreateMessageRequest(params=sampling_params))
    if pending is not None:
        return pending
    if _is_modern(ctx):
        result = types.CreateMessageResult.model_validate(_as_dict(ask.answer("sampling")))
    else:
        created = await ctx.session.create_message(
            sampling_params.messages, max_tokens=100, related_request_id=ctx.request_id
        )
        result = types.CreateMessageResult.model_validate(_as_dict(created))
    content = result.content
    blocks = content if isinstance(content, list) else [content]
    answer = " ".join(block.text for block in blocks if isinstance(block, types.TextContent)) or "(no text)"
    return types.CallToolResult(content=[_text(f"LLM response: {answer}")])


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    dumped: dict[str, Any] = value.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


async def _elicit(
    ctx: Ctx, params: types.CallToolRequestParams, message: str, schema: dict[str, Any]
) -> types.ElicitResult | types.CallToolResult | types.InputRequiredResult:
    if not _has_capability(ctx, types.ClientCapabilities(elicitation=types.ElicitationCapability())):
        return types.CallToolResult(is_error=True, content=[_text("The client does not support elicitation")])
    ask = _Ask(ctx, params)
    request = types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))
    pending = ask.pending("elicitation", request)
    if pending is not None:
        return pending
    if _is_modern(ctx):
        return types.ElicitResult.model_validate(_as_dict(ask.answer("elicitation")))
    return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)


async def _elicitation(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    message = str((params.arguments or {}).get("message", "Please provide your information"))
    result = await _elicit(ctx, params, message, ELICITATION_SCHEMA)
    if not isinstance(result, types.ElicitResult):
        return result
    return types.CallToolResult(
        content=[_text(f"User response: action={result.action}, content={json.dumps(result.content)}")]
    )


def _elicitation_tool(message: str, schema: dict[str, Any]) -> ToolFn:
    async def tool(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
        result = await _elicit(ctx, params, message, schema)
        if not isinstance(result, types.ElicitResult):
            return result
        text = f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"
        return types.CallToolResult(content=[_text(text)])

    return tool


async def _error_handling(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    return types.CallToolResult(is_error=True, content=[_text("This tool intentionally returns an error for testing")])


async def _reconnection(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    """SEP-1699 polling: close this call's SSE stream mid-call; the result is replayed after the client resumes."""
    await asyncio.sleep(STEP_DELAY)
    if ctx.close_sse_stream is not None:  # HTTP with an event store, protocol >= 2025-11-25
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
    return types.CallToolResult(content=[_text("Reconnection test completed")])


async def _json_schema_tool(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    text = f"JSON Schema 2020-12 tool called with {json.dumps(params.arguments or {})}"
    return types.CallToolResult(content=[_text(text)])


# --- 2026-07-28: multi-round-trip requests (input-required results) -----------------------------------------

RESULT_TYPES: dict[str, type[Any]] = {
    "elicitation/create": types.ElicitResult,
    "sampling/createMessage": types.CreateMessageResult,
    "roots/list": types.ListRootsResult,
}


def _ask_elicit(message: str, properties: dict[str, Any]) -> types.ElicitRequest:
    schema = {"type": "object", "properties": properties, "required": sorted(properties)}
    return types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))


def _ask_sample(prompt: str, max_tokens: int) -> types.CreateMessageRequest:
    message = types.SamplingMessage(role="user", content=_text(prompt))
    params = types.CreateMessageRequestParams(messages=[message], max_tokens=max_tokens)
    return types.CreateMessageRequest(params=params)


def _ask_roots() -> types.ListRootsRequest:
    return types.ListRootsRequest(params=types.RequestParams())


async def _gather(
    ctx: Ctx,
    params: types.InputResponseRequestParams,
    requests: Mapping[str, types.InputRequest],
    state: str | None = None,
) -> dict[str, Any] | types.InputRequiredResult:
    """The answers to `requests`, keyed like them, or the input-required result that asks for them.

    2026-07-28: answers come from the retry's `inputResponses`; any missing key is (re-)requested with an
    input-required result carrying `state` (sealed on the way out by the RequestStateBoundary). Extra keys
    are ignored. Handshake era: each request goes to the client live on this call's stream.
    """
    if _is_modern(ctx):
        have = dict(params.input_responses or {})
        missing = {key: request for key, request in requests.items() if key not in have}
        if missing:
            return types.InputRequiredResult(input_requests=missing, request_state=state)
        return {key: have[key] for key in requests}
    answers: dict[str, Any] = {}
    metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
    for key, request in requests.items():
        answers[key] = await ctx.session.send_request(request, RESULT_TYPES[request.method], metadata=metadata)
    return answers


def _answer(value: Any, kind: type[Any]) -> Any:
    """An answer as the model `kind`; a wrong shape is the client's protocol error (-32602)."""
    try:
        return kind.model_validate(_as_dict(value))
    except ValueError as exc:
        raise MCPError(INVALID_PARAMS, f"inputResponses: expected {kind.__name__}") from exc


def _elicited(value: Any) -> dict[str, Any]:
    result = _answer(value, types.ElicitResult)
    return dict(result.content or {}) if result.action == "accept" else {}


def _sampled(value: Any) -> str:
    result = _answer(value, types.CreateMessageResult)
    blocks = result.content if isinstance(result.content, list) else [result.content]
    return " ".join(block.text for block in blocks if isinstance(block, types.TextContent)) or "(no text)"


def _rooted(value: Any) -> list[str]:
    return [str(root.uri) for root in _answer(value, types.ListRootsResult).roots]


def _missing_capability(capability: str) -> MCPError:
    required = types.ClientCapabilities.model_validate({capability: {}})
    data = types.MissingRequiredClientCapabilityErrorData(required_capabilities=required)
    return MCPError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"This tool needs the client capability {capability!r}",
        data.model_dump(by_alias=True, mode="json", exclude_none=True),
    )


def _require(ctx: Ctx, capability: str) -> None:
    if not _has_capability(ctx, types.ClientCapabilities.model_validate({capability: {}})):
        raise _missing_capability(capability)


async def _irr_elicitation(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    answers = await _gather(ctx, params, {"user_name": _ask_elicit("What is your name?", {"name": {"type": "string"}})})
    if isinstance(answers, types.InputRequiredResult):
        return answers
    name = _elicited(answers["user_name"]).get("name", "stranger")
    return types.CallToolResult(content=[_text(f"Hello, {name}!")])


async def _irr_sampling(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    answers = await _gather(ctx, params, {"capital_question": _ask_sample("What is the capital of France?", 100)})
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return types.CallToolResult(content=[_text(f"LLM response: {_sampled(answers['capital_question'])}")])


async def _irr_list_roots(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    answers = await _gather(ctx, params, {"client_roots": _ask_roots()})
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return types.CallToolResult(content=[_text(f"Client roots: {', '.join(_rooted(answers['client_roots']))}")])


REQUEST_STATE = "confirm-round-1"


async def _irr_request_state(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    ask = {"confirm": _ask_elicit("Please confirm", {"ok": {"type": "boolean"}})}
    if _is_modern(ctx) and params.request_state != REQUEST_STATE:
        return types.InputRequiredResult(input_requests=ask, request_state=REQUEST_STATE)  # (re)start the exchange
    answers = await _gather(ctx, params, ask, REQUEST_STATE)
    if isinstance(answers, types.InputRequiredResult):
        return answers
    confirmed = _elicited(answers["confirm"]).get("ok")
    return types.CallToolResult(content=[_text(f"state-ok: requestState verified; confirmed={confirmed}")])


async def _irr_multiple_inputs(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    ask: dict[str, types.InputRequest] = {
        "user_name": _ask_elicit("What is your name?", {"name": {"type": "string"}}),
        "greeting": _ask_sample("Generate a greeting", 50),
        "client_roots": _ask_roots(),
    }
    answers = await _gather(ctx, params, ask, "multiple-inputs-round-1")
    if isinstance(answers, types.InputRequiredResult):
        return answers
    name = _elicited(answers["user_name"]).get("name", "stranger")
    text = f"name={name}; greeting={_sampled(answers['greeting'])}; roots={', '.join(_rooted(answers['client_roots']))}"
    return types.CallToolResult(content=[_text(text)])


async def _irr_multi_round(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    step1 = {"step1": _ask_elicit("Step 1: What is your name?", {"name": {"type": "string"}})}
    step2 = {"step2": _ask_elicit("Step 2: What is your favorite color?", {"color": {"type": "string"}})}
    state = params.request_state or ""
    if _is_modern(ctx) and state.startswith("round-2:"):
        name = json.loads(state.removeprefix("round-2:"))
    else:
        first = await _gather(ctx, params, step1, "round-1")
        if isinstance(first, types.InputRequiredResult):
            return first
        name = _elicited(first["step1"]).get("name", "stranger")
        if _is_modern(ctx):  # round 2 asks the next question; the first answer travels in the state
            return types.InputRequiredResult(input_requests=step2, request_state=f"round-2:{json.dumps(name)}")
    second = await _gather(ctx, params, step2, f"round-2:{json.dumps(name)}")
    if isinstance(second, types.InputRequiredResult):
        return second
    color = _elicited(second["step2"]).get("color", "none")
    return types.CallToolResult(content=[_text(f"{name} likes {color}")])


async def _irr_tampered_state(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    # The SDK's RequestStateBoundary rejects a modified requestState (-32602) before this handler runs.
    ask = {"confirm": _ask_elicit("Please confirm", {"ok": {"type": "boolean"}})}
    answers = await _gather(ctx, params, ask, "tamper-check-round-1")
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return types.CallToolResult(content=[_text("requestState verified")])


async def _irr_capabilities(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    """Asks only with what the client declared (`_meta` clientCapabilities on 2026-07-28)."""
    ask: dict[str, types.InputRequest] = {}
    if _has_capability(ctx, types.ClientCapabilities(sampling=types.SamplingCapability())):
        ask["sampling_question"] = _ask_sample("Say hello", 20)
    if _has_capability(ctx, types.ClientCapabilities(elicitation=types.ElicitationCapability())):
        ask["user_input"] = _ask_elicit("Anything to add?", {"note": {"type": "string"}})
    if _has_capability(ctx, types.ClientCapabilities(roots=types.RootsCapability())):
        ask["client_roots"] = _ask_roots()
    if not ask:
        return types.CallToolResult(content=[_text("The client declared no capability to ask with")])
    answers = await _gather(ctx, params, ask, "capabilities-round-1")
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return types.CallToolResult(content=[_text(f"Answered: {', '.join(sorted(answers))}")])


async def _missing_capability_tool(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    """Needs sampling: -32021 naming it (HTTP 400) when the client did not declare it."""
    _require(ctx, "sampling")
    answers = await _gather(ctx, params, {"sample": _ask_sample("Say something", 20)})
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return types.CallToolResult(content=[_text(f"LLM response: {_sampled(answers['sample'])}")])


async def _streaming_elicitation(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    """Needs input mid-call: never a request on the 2026-07-28 response stream, an input-required result instead."""
    _require(ctx, "elicitation")
    await ctx.session.report_progress(0.0, 1.0, "needs confirmation")
    answers = await _gather(ctx, params, {"confirmation": _ask_elicit("Continue?", {"ok": {"type": "boolean"}})})
    if isinstance(answers, types.InputRequiredResult):
        return answers
    return types.CallToolResult(content=[_text(f"Confirmation: {_elicited(answers['confirmation'])}")])


async def _x_mcp_header(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    # The SDK checks Mcp-Param-Region against `region` (SEP-2243) before this runs.
    region = (params.arguments or {}).get("region")
    return types.CallToolResult(content=[_text(f"Region: {region}")])


# The list-changed hooks really change a list (a dynamic tool / prompt comes and goes), so an intermediary
# that re-fetches on the notification and forwards only real changes still has something to forward.
LISTEN_BUS = InMemorySubscriptionBus()
DYNAMIC = {"tool": False, "prompt": False}
DYNAMIC_TOOL = types.Tool(name="test_dynamic_tool", description="Present every other list change", input_schema=NO_ARGS)
DYNAMIC_PROMPT = types.Prompt(name="test_dynamic_prompt", description="Present every other list change")


async def _announce(ctx: Ctx, event: ServerEvent) -> None:
    await LISTEN_BUS.publish(event)  # 2026-07-28 listen streams
    if not _is_modern(ctx):  # handshake era: the connection's standalone stream
        with contextlib.suppress(Exception):
            if isinstance(event, ToolsListChanged):
                await ctx.session.send_tool_list_changed()
            else:
                await ctx.session.send_prompt_list_changed()


async def _trigger_tool_change(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    DYNAMIC["tool"] = not DYNAMIC["tool"]
    await _announce(ctx, ToolsListChanged())
    return types.CallToolResult(content=[_text(f"test_dynamic_tool {'added' if DYNAMIC['tool'] else 'removed'}")])


async def _trigger_prompt_change(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    DYNAMIC["prompt"] = not DYNAMIC["prompt"]
    await _announce(ctx, PromptsListChanged())
    return types.CallToolResult(content=[_text(f"test_dynamic_prompt {'added' if DYNAMIC['prompt'] else 'removed'}")])


async def _dynamic_tool(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    return types.CallToolResult(content=[_text("dynamic tool called")])


def _plain(name: str, description: str) -> types.Tool:
    return types.Tool(name=name, description=description, input_schema=NO_ARGS)


MODERN_TOOLS: list[tuple[types.Tool, ToolFn]] = [
    (_plain("test_input_required_result_elicitation", "Asks the user's name (input-required)"), _irr_elicitation),
    (_plain("test_input_required_result_sampling", "Asks the client's LLM (input-required)"), _irr_sampling),
    (_plain("test_input_required_result_list_roots", "Asks the client's roots (input-required)"), _irr_list_roots),
    (_plain("test_input_required_result_request_state", "Round-trips requestState"), _irr_request_state),
    (_plain("test_input_required_result_multiple_inputs", "Asks three things at once"), _irr_multiple_inputs),
    (_plain("test_input_required_result_multi_round", "Asks twice, state evolving"), _irr_multi_round),
    (_plain("test_input_required_result_tampered_state", "Rejects a tampered requestState"), _irr_tampered_state),
    (_plain("test_input_required_result_capabilities", "Asks only with declared capabilities"), _irr_capabilities),
    (_plain("test_missing_capability", "Needs the sampling capability"), _missing_capability_tool),
    (_plain("test_streaming_elicitation", "Needs a confirmation mid-call"), _streaming_elicitation),
    (_plain("test_logging_tool", "Logs three messages (only with an opted-in logLevel)"), _tool_with_logging),
    (_plain("test_trigger_tool_change", "Adds or removes test_dynamic_tool"), _trigger_tool_change),
    (_plain("test_trigger_prompt_change", "Adds or removes test_dynamic_prompt"), _trigger_prompt_change),
    (
        types.Tool(
            name="test_x_mcp_header",
            description="Mirrors its region argument in the Mcp-Param-Region header (SEP-2243)",
            input_schema={
                "type": "object",
                "properties": {"region": {"type": "string", "description": "A region", "x-mcp-header": "Region"}},
                "required": ["region"],
            },
        ),
        _x_mcp_header,
    ),
]


TOOLS: dict[str, tuple[types.Tool, ToolFn]] = {
    tool.name: (tool, fn)
    for tool, fn in [
        (types.Tool(name="test_simple_text", description="Returns simple text", input_schema=NO_ARGS), _simple_text),
        (
            types.Tool(name="test_image_content", description="Returns a PNG image", input_schema=NO_ARGS),
            _image_content,
        ),
        (types.Tool(name="test_audio_content", description="Returns a WAV clip", input_schema=NO_ARGS), _audio_content),
        (
            types.Tool(name="test_embedded_resource", description="Returns an embedded resource", input_schema=NO_ARGS),
            _embedded_resource,
        ),
        (
            types.Tool(
                name="test_multiple_content_types", description="Returns text, image and resource", input_schema=NO_ARGS
            ),
            _multiple_content_types,
        ),
        (
            types.Tool(name="test_tool_with_logging", description="Logs three messages", input_schema=NO_ARGS),
            _tool_with_logging,
        ),
        (
            types.Tool(name="test_tool_with_progress", description="Reports progress 0/50/100", input_schema=NO_ARGS),
            _tool_with_progress,
        ),
        (
            types.Tool(
                name="test_sampling",
                description="Asks the client for an LLM completion",
                input_schema={
                    "type": "object",
                    "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
                    "required": ["prompt"],
                },
            ),
            _sampling,
        ),
        (
            types.Tool(
                name="test_elicitation",
                description="Asks the user for input",
                input_schema={
                    "type": "object",
                    "properties": {"message": {"type": "string", "description": "The message to show the user"}},
                    "required": ["message"],
                },
            ),
            _elicitation,
        ),
        (
            types.Tool(
                name="test_elicitation_sep1034_defaults",
                description="Elicitation with defaults for every primitive type (SEP-1034)",
                input_schema=NO_ARGS,
            ),
            _elicitation_tool("Please review and update the form fields with defaults", SEP1034_SCHEMA),
        ),
        (
            types.Tool(
                name="test_elicitation_sep1330_enums",
                description="Elicitation with all five enum variants (SEP-1330)",
                input_schema=NO_ARGS,
            ),
            _elicitation_tool("Please select options from the enum fields", SEP1330_SCHEMA),
        ),
        (
            types.Tool(name="test_error_handling", description="Always returns isError", input_schema=NO_ARGS),
            _error_handling,
        ),
        (
            types.Tool(
                name="test_reconnection",
                description="Closes its SSE stream mid-call to test resumption (SEP-1699)",
                input_schema=NO_ARGS,
            ),
            _reconnection,
        ),
        (
            types.Tool(
                name="json_schema_2020_12_tool",
                description="Tool with JSON Schema 2020-12 features",
                input_schema=JSON_SCHEMA_2020_12,
            ),
            _json_schema_tool,
        ),
        *MODERN_TOOLS,
    ]
}


async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    tools = [tool for tool, _ in TOOLS.values()]
    return types.ListToolsResult(tools=[*tools, DYNAMIC_TOOL] if DYNAMIC["tool"] else tools)


async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> ToolResult:
    if params.name == DYNAMIC_TOOL.name and DYNAMIC["tool"]:
        return await _dynamic_tool(ctx, params)
    entry = TOOLS.get(params.name)
    if entry is None:
        raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")
    return await entry[1](ctx, params)


def tool_input_schema(name: str) -> dict[str, Any] | None:
    """For the SDK's Mcp-Param-* header validation (2026-07-28 HTTP) without running tools/list."""
    entry = TOOLS.get(name)
    return entry[0].input_schema if entry is not None else None


# --- logging --------------------------------------------------------------------------------------------------

LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
_min_level: dict[str, int] = {}  # connection key -> index into LEVELS


def _connection_key(ctx: Ctx) -> str:
    request = ctx.request
    headers = getattr(request, "headers", None)
    if headers is not None:
        return str(headers.get("mcp-session-id", ""))
    return "stdio"


async def _log(ctx: Ctx, level: types.LoggingLevel, message: str) -> None:
    if LEVELS.index(level) < _min_level.get(_connection_key(ctx), 0):
        return
    await ctx.session.send_log_message(level, message, logger="conformance-fixture", related_request_id=ctx.request_id)


async def set_logging_level(ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
    _min_level[_connection_key(ctx)] = LEVELS.index(params.level)
    return types.EmptyResult()


# --- resources ------------------------------------------------------------------------------------------------

STATIC_TEXT = "This is the content of the static text resource."
TEMPLATE = "test://template/{id}/data"
TEMPLATE_RE = re.compile(r"^test://template/([^/]+)/data$")

RESOURCES = [
    types.Resource(
        uri="test://static-text", name="static-text", description="A static text resource", mime_type="text/plain"
    ),
    types.Resource(
        uri="test://static-binary", name="static-binary", description="A static PNG image", mime_type="image/png"
    ),
    types.Resource(
        uri="test://watched-resource",
        name="watched-resource",
        description="A resource clients may subscribe to",
        mime_type="text/plain",
    ),
]


async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=RESOURCES)


async def list_resource_templates(
    ctx: Ctx, params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    template = types.ResourceTemplate(
        uri_template=TEMPLATE,
        name="template-data",
        description="Data for the given id",
        mime_type="application/json",
    )
    return types.ListResourceTemplatesResult(resource_templates=[template])


async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    uri = str(params.uri)
    contents: types.TextResourceContents | types.BlobResourceContents
    if uri == "test://static-text":
        contents = types.TextResourceContents(uri=uri, mime_type="text/plain", text=STATIC_TEXT)
    elif uri == "test://static-binary":
        contents = types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG_B64)
    elif uri == "test://watched-resource":
        contents = types.TextResourceContents(uri=uri, mime_type="text/plain", text="Watched resource content.")
    elif match := TEMPLATE_RE.match(uri):
        ident = match.group(1)
        body = json.dumps({"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"})
        contents = types.TextResourceContents(uri=uri, mime_type="application/json", text=body)
    else:
        code = INVALID_PARAMS if _is_modern(ctx) else RESOURCE_NOT_FOUND  # SEP-2164 on 2026-07-28
        raise MCPError(code, "Resource not found", {"uri": uri})
    return types.ReadResourceResult(contents=[contents])


async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


# --- prompts --------------------------------------------------------------------------------------------------

PROMPTS = [
    types.Prompt(name="test_simple_prompt", description="A prompt without arguments"),
    types.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two required arguments",
        arguments=[
            types.PromptArgument(name="arg1", description="First test argument", required=True),
            types.PromptArgument(name="arg2", description="Second test argument", required=True),
        ],
    ),
    types.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt embedding a resource",
        arguments=[types.PromptArgument(name="resourceUri", description="URI of the resource", required=True)],
    ),
    types.Prompt(name="test_prompt_with_image", description="A prompt with an image"),
    types.Prompt(name="test_input_required_result_prompt", description="Asks for context first (input-required)"),
]


async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=[*PROMPTS, DYNAMIC_PROMPT] if DYNAMIC["prompt"] else PROMPTS)


def _user(content: Any) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=content)


async def get_prompt(
    ctx: Ctx, params: types.GetPromptRequestParams
) -> types.GetPromptResult | types.InputRequiredResult:
    args = dict(params.arguments or {})
    if params.name == "test_input_required_result_prompt":
        ask = {"user_context": _ask_elicit("What context should the prompt use?", {"context": {"type": "string"}})}
        answers = await _gather(ctx, params, ask)
        if isinstance(answers, types.InputRequiredResult):
            return answers
        context = _elicited(answers["user_context"]).get("context", "")
        return types.GetPromptResult(messages=[_user(_text(f"Use this context: {context}"))])
    if params.name == DYNAMIC_PROMPT.name and DYNAMIC["prompt"]:
        return types.GetPromptResult(messages=[_user(_text("A dynamic prompt."))])
    if params.name == "test_simple_prompt":
        messages = [_user(_text("This is a simple prompt for testing."))]
    elif params.name == "test_prompt_with_arguments":
        arg1, arg2 = args.get("arg1", ""), args.get("arg2", "")
        messages = [_user(_text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]
    elif params.name == "test_prompt_with_embedded_resource":
        uri = args.get("resourceUri", "test://example-resource")
        resource = types.TextResourceContents(
            uri=uri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        messages = [
            _user(types.EmbeddedResource(type="resource", resource=resource)),
            _user(_text("Please process the embedded resource above.")),
        ]
    elif params.name == "test_prompt_with_image":
        messages = [_user(_image()), _user(_text("Please analyze the image above."))]
    else:
        raise MCPError(INVALID_PARAMS, f"Unknown prompt: {params.name}")
    return types.GetPromptResult(messages=messages)


# --- completion -----------------------------------------------------------------------------------------------

COMPLETIONS = {"arg1": ["paris", "park", "party", "test-value"], "arg2": ["alpha", "beta"], "id": ["1", "123"]}


async def complete(ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
    candidates = COMPLETIONS.get(params.argument.name, [])
    values = [v for v in candidates if v.startswith(params.argument.value)] or candidates
    return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))


# --- server ---------------------------------------------------------------------------------------------------


class FixtureServer(Server[Any]):
    """Advertises `listChanged` on every list (the low-level server defaults them to false)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options
            or NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True),
            experimental_capabilities,
            extensions,
        )


def build_server() -> FixtureServer:
    server = FixtureServer(
        SERVER_NAME,
        version="1.0.0",
        get_tool_input_schema=tool_input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_logging_level,
        # 2026-07-28 clients (a hub may speak that era upstream) get change notifications on listen streams.
        on_subscriptions_listen=ListenHandler(LISTEN_BUS),
    )
    # Seal every outgoing requestState and verify every echo (a tampered one gets -32602).
    server.middleware.append(RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=SERVER_NAME))
    return server


class MemoryEventStore(EventStore):
    """Keeps the last `limit` SSE events in memory so a client can resume a stream with Last-Event-ID."""

    def __init__(self, limit: int = 10_000) -> None:
        self._ids = itertools.count(1)
        self._events: deque[tuple[str, str, JSONRPCMessage | None]] = deque(maxlen=limit)

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        event_id = str(next(self._ids))
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        events = list(self._events)
        position = next((i for i, (event_id, _, _) in enumerate(events) if event_id == last_event_id), None)
        if position is None:
            return None
        stream_id = events[position][1]
        for event_id, stream, message in events[position + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


async def serve_stdio() -> None:
    server = build_server()
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def serve_http(port: int) -> None:
    server = build_server()
    app = server.streamable_http_app(
        host="127.0.0.1",  # turns on DNS-rebinding protection for loopback Host/Origin
        event_store=MemoryEventStore(),
        retry_interval=RETRY_INTERVAL_MS,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(f"LISTENING http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    # h11 strips optional whitespace around header values (RFC 9110 5.5), which SEP-2243 requires of the
    # Mcp-Name check; httptools would hand the SDK "  name  " and the request would be refused.
    config = uvicorn.Config(
        app, http="h11", log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    await uvicorn.Server(config).serve(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0 picks a free one)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_stdio() if args.transport == "stdio" else serve_http(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
