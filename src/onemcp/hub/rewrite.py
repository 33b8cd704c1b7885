"""An upstream's reply as the client sees it: pure functions of the reply and a few facts, no hub state.

Owns the parts of a reply that the client knows differently from the upstream: resource URIs in
`resources/read` contents, in a tool's result (`tools/call`, or `tasks/result` of a task-augmented
call) and in `prompts/get` messages (resource links and embedded resources), the 2026-07-28 result
envelope a legacy client must not see, its error code for an unknown resource, the bound on a
tool result's text (either way it comes) and on a completion's values, and what makes a tool result
(`tool_result_problem`), a prompt, a read resource, a completion or a task (`reply_problem`,
`task_problem`) or a 2026-07-28 result's envelope (`envelope_problem`) unreadable to a client that
validates it. Does not own task ids (`TaskRouter` keeps them, `hub/tasks.py`) nor which upstream
answered. Every function returns a new message and leaves its argument untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onemcp.auth import limits
from onemcp.catalog import repair
from onemcp.protocol.errors import INVALID_PARAMS, RESOURCE_NOT_FOUND
from onemcp.protocol.jsonrpc import Message
from onemcp.upstream import era

TOOL_RESULTS = frozenset({"tools/call", "tasks/result"})  # a CallToolResult: a task the hub made is a tool call's
VisibleUri = Callable[[str], str]
"""An upstream's resource URI -> the URI the client knows (prefixed with the server when names are)."""


def for_client(
    msg: Message,
    method: str,
    *,
    visible_uri: VisibleUri | None,
    client_modern: bool,
    upstream_modern: bool,
    max_result_bytes: int | None = None,
    asked_uri: str | None = None,
) -> Message:
    """The reply to `method` as this client sees it.

    `visible_uri` is None when URIs pass unchanged (an unprefixed hub); `max_result_bytes` bounds the
    text of a tool's result (`tools/call` or `tasks/result`; a task handle has none); `asked_uri`: the
    upstream URI a `resources/read` named (an error that names it names the URI the client knows).
    """
    out = dict(msg)
    error = out.get("error")
    if isinstance(error, dict) and client_modern and not upstream_modern and error.get("code") == RESOURCE_NOT_FOUND:
        out["error"] = error = {**error, "code": INVALID_PARAMS}  # SEP-2164: 2026-07-28's code for an unknown resource
    if isinstance(error, dict) and visible_uri is not None:
        out["error"] = visible_error(error, visible_uri, asked_uri)
    result = out.get("result")
    if not isinstance(result, dict):
        return out
    result = dict(result)
    if upstream_modern and not client_modern:
        era.legacy_result(result)  # a legacy client must not see the modern envelope (top-level keys only)
    if method in TOOL_RESULTS and "task" not in result and max_result_bytes is not None:
        result = truncated(result, max_result_bytes)
    elif method == "completion/complete":
        result = bounded_completion(result)
    if visible_uri is not None:
        result = with_visible_uris(method, result, visible_uri)
    out["result"] = result
    return out


def truncated(result: dict[str, Any], limit: int) -> dict[str, Any]:
    """A tool result with its text cut to `limit` bytes in all, saying so (`limits.truncate`)."""
    content = result.get("content")
    if not isinstance(content, list):
        return result
    out = {**result, "content": [dict(item) if isinstance(item, dict) else item for item in content]}
    limits.truncate(out, limit)
    return out


def visible_error(error: dict[str, Any], visible_uri: VisibleUri, asked: str | None = None) -> dict[str, Any]:
    """An error naming a resource (`data.uri`, as "resource not found" does; or, in its message only, the
    URI the request `asked` for, as the TypeScript SDK's "Resource demo://x not found" does) names the
    URI the client knows."""
    data = error.get("data")
    uri = data.get("uri") if isinstance(data, dict) else None
    message = error.get("message")
    if not isinstance(uri, str) or not uri:
        if asked and isinstance(message, str) and asked in message and (shown := visible_uri(asked)) not in message:
            return {**error, "message": message.replace(asked, shown)}
        return error
    shown = visible_uri(uri)
    fixed = {**error, "data": {**data, "uri": shown}}  # type: ignore[dict-item]
    if isinstance(message, str) and shown != uri:
        fixed["message"] = message.replace(uri, shown) if shown not in message else message
    return fixed


def with_visible_uris(method: str, result: dict[str, Any], visible_uri: VisibleUri) -> dict[str, Any]:
    """A result whose resource URIs are the ones the client knows."""
    if method == "resources/read":
        contents = result.get("contents")
        if isinstance(contents, list):
            return {**result, "contents": [visible_resource(item, visible_uri) for item in contents]}
    elif method in TOOL_RESULTS:
        content = result.get("content")
        if isinstance(content, list):
            fixed = [visible_content(item, visible_uri) if isinstance(item, dict) else item for item in content]
            return {**result, "content": fixed}
    elif method == "prompts/get":
        messages = result.get("messages")
        if isinstance(messages, list):
            return {**result, "messages": [_visible_message(item, visible_uri) for item in messages]}
    return result


def named_uris(method: str, result: dict[str, Any]) -> list[str]:
    """The resource URIs a result names (those `with_visible_uris` rewrites), as it names them."""
    named: list[str] = []

    def note(uri: str) -> str:
        named.append(uri)
        return uri

    with_visible_uris(method, result, note)
    return named


def visible_resource(item: Any, visible_uri: VisibleUri) -> Any:
    """A resource (contents, link or embedded) with the URI the client knows."""
    if isinstance(item, dict) and isinstance(item.get("uri"), str):
        return {**item, "uri": visible_uri(item["uri"])}
    return item


def visible_content(item: dict[str, Any], visible_uri: VisibleUri) -> dict[str, Any]:
    """A content block: a `resource_link` or an embedded `resource` gets the visible URI."""
    if item.get("type") == "resource_link":
        return visible_resource(item, visible_uri)  # type: ignore[no-any-return]
    if item.get("type") == "resource" and isinstance(item.get("resource"), dict):
        return {**item, "resource": visible_resource(item["resource"], visible_uri)}
    return item


def _visible_message(item: Any, visible_uri: VisibleUri) -> Any:
    if isinstance(item, dict) and isinstance(item.get("content"), dict):
        return {**item, "content": visible_content(item["content"], visible_uri)}
    return item


CONTENT_STRINGS = {  # each content block type -> its fields that must be strings (the SDKs' wire types)
    "text": ("text",),
    "image": ("data", "mimeType"),
    "audio": ("data", "mimeType"),
    "resource_link": ("uri", "name"),
    "resource": (),
}


def tool_result_problem(result: dict[str, Any], *, legacy: bool) -> str | None:
    """Why the official SDK clients would refuse this tool result (a CallToolResult), or None.

    A result of the 2026-07-28 era that is not complete (it asks for input) is not one; a legacy
    client also needs `structuredContent` to be an object (2026-07-28 allows any JSON value).
    """
    if isinstance(result.get("resultType"), str) and result["resultType"] != "complete":
        return None
    content = result.get("content")
    if not isinstance(content, list):
        return "content is not a list" if content is not None else "content is missing"
    for index, item in enumerate(content):
        problem = _content_problem(item)
        if problem is not None:
            return f"content[{index}] {problem}"
    structured = result.get("structuredContent")
    if legacy and structured is not None and not isinstance(structured, dict):
        return "structuredContent is not an object"
    if result.get("isError") is not None and not isinstance(result["isError"], bool):
        return "isError is not a boolean"
    if result.get("_meta") is not None and not isinstance(result["_meta"], dict):
        return "_meta is not an object"
    return None


def _content_problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "is not an object"
    kind = item.get("type")
    if kind not in CONTENT_STRINGS:
        return "has no type" if kind is None else f"has the unknown type {str(kind)[:40]!r}"
    for key in CONTENT_STRINGS[kind]:
        if not isinstance(item.get(key), str):
            return f"({kind}) has no string {key}"
    if kind == "resource":
        inner = item.get("resource")
        if not (isinstance(inner, dict) and isinstance(inner.get("uri"), str)):
            return "(resource) has no resource with a string uri"
        if not (isinstance(inner.get("text"), str) or isinstance(inner.get("blob"), str)):
            return "(resource) has neither a string text nor a string blob"
    if kind == "resource_link":
        _, report = repair.entries("resources", [item])
        mistyped = next(iter({**report.withheld, **report.repaired}.values()), None)
        if mistyped is not None:
            return f"(resource_link): {mistyped.replace(': dropped', '')}"
    notes = item.get("annotations")
    if notes is not None and (not isinstance(notes, dict) or repair.bad_annotations(notes)):
        return "has annotations of the wrong type"
    if item.get("_meta") is not None and not isinstance(item["_meta"], dict):
        return "has a _meta that is not an object"
    return None


ASKING = frozenset({"tools/call", "prompts/get", "resources/read"})  # the requests a 2026-07-28 server may ask input of
INPUT_METHODS = ("elicitation/create", "sampling/createMessage", "roots/list")  # what it may ask


def envelope_problem(method: str, result: dict[str, Any]) -> str | None:
    """Why a 2026-07-28 client would refuse this result's envelope, or None: a `resultType` that is
    not a string, or an input-required result it cannot read (on a request that cannot ask for input,
    `inputRequests` not an object of the requests a server may ask, a `requestState` not a string).

    A result that is complete (or of an extension's `resultType`) is not judged here.
    """
    kind = result.get("resultType")
    if kind is None or kind == "complete":
        return None
    if not isinstance(kind, str):
        return "resultType is not a string"
    if kind != "input_required":
        return None
    if method not in ASKING:
        return f"resultType is 'input_required', which {method} cannot answer"
    requests = result.get("inputRequests")
    if requests is not None and not isinstance(requests, dict):
        return "inputRequests is not an object"
    for key, request in (requests or {}).items():
        if not isinstance(request, dict) or request.get("method") not in INPUT_METHODS:
            return f"inputRequests[{key[:40]!r}] is not an {', '.join(INPUT_METHODS[:2])} or {INPUT_METHODS[2]} request"
        problem = _input_request_problem(request["method"], request.get("params"))
        if problem is not None:
            return f"inputRequests[{key[:40]!r}].params {problem}"
    if result.get("requestState") is not None and not isinstance(result["requestState"], str):
        return "requestState is not a string"
    return None


def _input_request_problem(method: str, params: Any) -> str | None:
    """What the SDK client's ElicitRequest / CreateMessageRequest / ListRootsRequest need of their params
    (not the blocks of a sampling message: they may be tool uses and results too)."""
    if params is None:
        return None if method == "roots/list" else "is missing"
    if not isinstance(params, dict):
        return "is not an object"
    if method == "elicitation/create":
        if not isinstance(params.get("message"), str):
            return "has no string message"
        if params.get("mode") == "url":
            return None if isinstance(params.get("url"), str) else "(url mode) has no string url"
        schema = params.get("requestedSchema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return "has no requestedSchema of type object"
    elif method == "sampling/createMessage":
        messages = params.get("messages")
        if not isinstance(messages, list):
            return "has no messages list"
        for index, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                return f"messages[{index}] has no role 'user' or 'assistant'"
            if not isinstance(content, dict | list):
                return f"messages[{index}] has no content"
        tokens = params.get("maxTokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            return "has no integer maxTokens"
    return None


TASK_STATUSES = ("working", "input_required", "completed", "failed", "cancelled")
TASK_REPLIES = frozenset({"tasks/get", "tasks/cancel"})  # a Task (2025-11-25): GetTaskResult, CancelTaskResult


# An id a server names that the hub keeps while it lasts (a task's, 10,000 tasks at most, hub/tasks.py; a URL
# elicitation's, 1,024 at most, hub/reverse.py): a server's 60 MB ids, one per call, held gigabytes. Ids are
# short in practice (a UUID is 36 characters).
MAX_KEPT_ID = 1024


def long_id(value: str, named: str) -> str | None:
    """Why the hub will not keep id `value` (the field `named`): it is over MAX_KEPT_ID characters; or None."""
    if len(value) > MAX_KEPT_ID:
        return f"{named} is {len(value)} characters long, over the hub's {MAX_KEPT_ID}"
    return None


def task_problem(task: Any, where: str = "") -> str | None:
    """Why a client that validates a 2025-11-25 Task (a handle's `task`, a tasks/get or tasks/cancel
    result, a tasks/list entry; the TypeScript SDK's tasks API does) would refuse it, or None.
    `where` names it in the answer ("task.": "task.ttl is not a number or null")."""
    if not isinstance(task, dict):
        return f"{where.rstrip('.') or 'the task'} is not an object"
    for key in ("taskId", "createdAt", "lastUpdatedAt"):
        if not isinstance(task.get(key), str):
            return f"{where}{key} is not a string"
    if long := long_id(task["taskId"], f"{where}taskId"):  # kept (the server's and the client's) while it runs
        return long
    status = task.get("status")
    if status not in TASK_STATUSES:
        said = "is missing" if status is None else f"is {str(status)[:40]!r}"
        return f"{where}status {said}, not {', '.join(map(repr, TASK_STATUSES[:-1]))} or {TASK_STATUSES[-1]!r}"
    if "ttl" not in task:
        return f"{where}ttl is missing (a number or null)"
    if task["ttl"] is not None and not _number(task["ttl"]):
        return f"{where}ttl is not a number or null"
    if task.get("pollInterval") is not None and not _number(task["pollInterval"]):
        return f"{where}pollInterval is not a number"
    if task.get("statusMessage") is not None and not isinstance(task["statusMessage"], str):
        return f"{where}statusMessage is not a string"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


ROLES = ("user", "assistant")
# the results `reply_problem` knows
CHECKED_REPLIES = frozenset({"prompts/get", "resources/read", "completion/complete", *TASK_REPLIES})
MAX_COMPLETIONS = 100  # values in one completion result (the spec's "must not exceed"; a 2026-07-28 client checks)


def reply_problem(method: str, result: dict[str, Any]) -> str | None:
    """Why the official SDK clients would refuse this `prompts/get`, `resources/read`,
    `completion/complete`, `tasks/get` or `tasks/cancel` result, or None.

    What their wire types (GetPromptResult, ReadResourceResult, CompleteResult, both eras) require
    of it, by JSON type as zod checks (pydantic lets "3" be an integer); a result of the 2026-07-28
    era that is not complete (it asks for input) is not one.
    """
    if isinstance(result.get("resultType"), str) and result["resultType"] != "complete":
        return None
    if method == "prompts/get":
        problem = _prompt_problem(result)
    elif method == "resources/read":
        problem = _read_problem(result)
    elif method == "completion/complete":
        problem = _completion_problem(result)
    elif method in TASK_REPLIES:
        problem = task_problem(result)
    else:  # not one it knows
        return None
    if problem is None and result.get("_meta") is not None and not isinstance(result["_meta"], dict):
        return "_meta is not an object"
    return problem


def _prompt_problem(result: dict[str, Any]) -> str | None:
    if result.get("description") is not None and not isinstance(result["description"], str):
        return "description is not a string"
    messages = result.get("messages")
    if not isinstance(messages, list):
        return "messages is not a list" if messages is not None else "messages is missing"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{index}] is not an object"
        role = message.get("role")
        if role not in ROLES:
            said = "has no role" if role is None else f"has the role {str(role)[:40]!r}"
            return f"messages[{index}] {said}, not 'user' or 'assistant'"
        content = message.get("content")
        problem = _content_problem(content) if content is not None else "is missing"
        if problem is not None:
            return f"messages[{index}].content {problem}"
    return None


def _read_problem(result: dict[str, Any]) -> str | None:
    contents = result.get("contents")
    if not isinstance(contents, list):
        return "contents is not a list" if contents is not None else "contents is missing"
    for index, item in enumerate(contents):
        if not isinstance(item, dict):
            return f"contents[{index}] is not an object"
        if not isinstance(item.get("uri"), str):
            return f"contents[{index}] has no string uri"
        if not (isinstance(item.get("text"), str) or isinstance(item.get("blob"), str)):
            return f"contents[{index}] has neither a string text nor a string blob"
        if item.get("mimeType") is not None and not isinstance(item["mimeType"], str):
            return f"contents[{index}] has a mimeType that is not a string"
        if item.get("_meta") is not None and not isinstance(item["_meta"], dict):
            return f"contents[{index}] has a _meta that is not an object"
    return None


def _completion_problem(result: dict[str, Any]) -> str | None:
    completion = result.get("completion")
    if not isinstance(completion, dict):
        return "completion is not an object" if completion is not None else "completion is missing"
    values = completion.get("values")
    if not isinstance(values, list):
        return "completion.values is not a list" if values is not None else "completion.values is missing"
    for index, value in enumerate(values):
        if not isinstance(value, str):
            return f"completion.values[{index}] is not a string"
    total = completion.get("total")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
        return "completion.total is not an integer"
    if completion.get("hasMore") is not None and not isinstance(completion["hasMore"], bool):
        return "completion.hasMore is not a boolean"
    return None


def bounded_completion(result: dict[str, Any]) -> dict[str, Any]:
    """A completion result with at most MAX_COMPLETIONS values; the rest are said to exist (`hasMore`)."""
    completion = result.get("completion")
    values = completion.get("values") if isinstance(completion, dict) else None
    if not isinstance(values, list) or len(values) <= MAX_COMPLETIONS:
        return result
    assert isinstance(completion, dict)
    return {**result, "completion": {**completion, "values": values[:MAX_COMPLETIONS], "hasMore": True}}
