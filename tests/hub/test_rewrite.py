"""`hub/rewrite.py`: an upstream's reply as the client sees it, without a hub."""

from __future__ import annotations

import copy
from typing import Any

from onemcp.hub.rewrite import (
    envelope_problem,
    for_client,
    named_uris,
    reply_problem,
    task_problem,
    tool_result_problem,
    truncated,
    visible_content,
    with_visible_uris,
)
from onemcp.protocol.errors import INVALID_PARAMS, RESOURCE_NOT_FOUND
from onemcp.protocol.jsonrpc import Message
from onemcp.protocol.meta import SERVER_INFO


def prefixed(uri: str) -> str:
    return f"files+{uri}"


def reply(result: dict[str, Any]) -> Message:
    return {"jsonrpc": "2.0", "id": 7, "result": result}


def legacy_to_legacy(msg: Message, method: str, **options: Any) -> Message:
    return for_client(msg, method, client_modern=False, upstream_modern=False, **options)


def test_resource_contents_get_visible_uris() -> None:
    msg = reply({"contents": [{"uri": "file:///a.txt", "text": "A"}, {"blob": "no uri"}]})
    out = legacy_to_legacy(msg, "resources/read", visible_uri=prefixed)
    assert out["result"]["contents"] == [{"uri": "files+file:///a.txt", "text": "A"}, {"blob": "no uri"}]
    assert out["id"] == 7


def test_tool_content_links_and_embedded_resources_get_visible_uris() -> None:
    content: list[Any] = [
        {"type": "text", "text": "see"},
        {"type": "resource_link", "uri": "file:///l", "name": "l"},
        {"type": "resource", "resource": {"uri": "file:///e", "text": "E"}},
        "not an object",
    ]
    out = with_visible_uris("tools/call", {"content": content}, prefixed)
    assert out["content"] == [
        {"type": "text", "text": "see"},
        {"type": "resource_link", "uri": "files+file:///l", "name": "l"},
        {"type": "resource", "resource": {"uri": "files+file:///e", "text": "E"}},
        "not an object",
    ]


def test_the_uris_a_result_names_are_those_it_shows_the_client() -> None:
    content: list[Any] = [
        {"type": "resource_link", "uri": "https://bucket.example/r?sig=1", "name": "r"},
        {"type": "resource", "resource": {"uri": "file:///e", "text": "E"}},
        {"type": "text", "text": "https://not-a-link.example"},
    ]
    assert named_uris("tools/call", {"content": content}) == ["https://bucket.example/r?sig=1", "file:///e"]
    assert named_uris("resources/read", {"contents": [{"uri": "https://a.example/x", "text": "x"}]}) == [
        "https://a.example/x"
    ]
    assert named_uris("tools/list", {"tools": [{"uri": "https://a.example/x"}]}) == []


def test_prompt_messages_get_visible_uris() -> None:
    messages = [
        {"role": "user", "content": {"type": "resource", "resource": {"uri": "mem://x", "text": "X"}}},
        {"role": "assistant", "content": {"type": "text", "text": "ok"}},
    ]
    out = legacy_to_legacy(reply({"messages": messages}), "prompts/get", visible_uri=prefixed)
    assert out["result"]["messages"][0]["content"]["resource"]["uri"] == "files+mem://x"
    assert out["result"]["messages"][1] == messages[1]


def test_other_methods_and_unprefixed_hubs_leave_uris_alone() -> None:
    result = {"contents": [{"uri": "file:///a"}]}
    assert with_visible_uris("completion/complete", result, prefixed) is result
    out = legacy_to_legacy(reply(result), "resources/read", visible_uri=None)
    assert out["result"] == result


def test_the_argument_is_never_changed() -> None:
    msg = reply(
        {
            "content": [{"type": "resource_link", "uri": "u"}, {"type": "text", "text": "x" * 50}],
            "resultType": "complete",
        }
    )
    before = copy.deepcopy(msg)
    out = for_client(
        msg, "tools/call", visible_uri=prefixed, client_modern=False, upstream_modern=True, max_result_bytes=10
    )
    assert msg == before
    assert out != before


def test_a_legacy_client_loses_the_modern_envelope() -> None:
    result = {"content": [], "resultType": "complete", "ttlMs": 5, "_meta": {SERVER_INFO: {"name": "up"}, "k": 1}}
    out = for_client(reply(result), "tools/call", visible_uri=None, client_modern=False, upstream_modern=True)
    assert out["result"] == {"content": [], "_meta": {"k": 1}}
    kept = for_client(reply(result), "tools/call", visible_uri=None, client_modern=True, upstream_modern=True)
    assert kept["result"] == result


def test_unknown_resource_code_for_a_modern_client_of_a_legacy_upstream() -> None:
    error: Message = {"jsonrpc": "2.0", "id": 1, "error": {"code": RESOURCE_NOT_FOUND, "message": "gone"}}
    out = for_client(error, "resources/read", visible_uri=prefixed, client_modern=True, upstream_modern=False)
    assert out["error"] == {"code": INVALID_PARAMS, "message": "gone"}
    same = for_client(error, "resources/read", visible_uri=prefixed, client_modern=False, upstream_modern=False)
    assert same["error"]["code"] == RESOURCE_NOT_FOUND


def test_tool_text_is_bounded_but_not_a_task_handle() -> None:
    long = reply({"content": [{"type": "text", "text": "abcdefghij"}], "structuredContent": {"n": 1}})
    out = legacy_to_legacy(long, "tools/call", visible_uri=None, max_result_bytes=4)
    texts = [item["text"] for item in out["result"]["content"]]
    assert texts[0] == "abcd"
    assert "6 bytes omitted" in texts[1]
    assert "structuredContent" not in out["result"]
    task = reply({"task": {"taskId": "t1"}, "content": [{"type": "text", "text": "abcdefghij"}]})
    assert legacy_to_legacy(task, "tools/call", visible_uri=None, max_result_bytes=4) == task
    listed = reply({"contents": [{"uri": "u", "text": "abcdefghij"}]})
    assert legacy_to_legacy(listed, "resources/read", visible_uri=None, max_result_bytes=4) == listed


def test_truncated_without_content_is_the_same_result() -> None:
    result: dict[str, Any] = {"structuredContent": {"n": 1}}
    assert truncated(result, 1) is result


def test_visible_content_leaves_other_blocks() -> None:
    image = {"type": "image", "data": "AA==", "mimeType": "image/png", "uri": "not rewritten"}
    assert visible_content(image, prefixed) == image
    broken = {"type": "resource", "resource": "not an object"}
    assert visible_content(broken, prefixed) == broken


def test_an_error_naming_a_resource_names_the_clients_uri() -> None:
    """'Resource not found: file:///x' from upstream `fs` reads 'fs+file:///x' to the client who asked for that."""
    upstream = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32002, "message": "Resource not found: file:///x",
                                                      "data": {"uri": "file:///x"}}}  # fmt: skip
    out = for_client(upstream, "resources/read", visible_uri=lambda u: f"fs+{u}", client_modern=False,
                     upstream_modern=False)  # fmt: skip
    assert out["error"]["message"] == "Resource not found: fs+file:///x"
    assert out["error"]["data"] == {"uri": "fs+file:///x"}
    plain = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "boom"}}
    assert for_client(plain, "tools/call", visible_uri=lambda u: u, client_modern=False, upstream_modern=False) == plain


def test_a_tasks_result_is_a_tool_result_with_visible_uris_and_bounded_text() -> None:
    # what tasks/result carries is the task-augmented tools/call's result: rewritten as a direct call's
    content = [{"type": "text", "text": "x" * 500}, {"type": "resource_link", "uri": "mem://shared", "name": "s"}]
    out = legacy_to_legacy(reply({"content": content}), "tasks/result", visible_uri=prefixed, max_result_bytes=100)
    direct = legacy_to_legacy(reply({"content": content}), "tools/call", visible_uri=prefixed, max_result_bytes=100)
    assert out == direct
    shown = out["result"]["content"]
    assert {"type": "resource_link", "uri": "files+mem://shared", "name": "s"} in shown
    assert len(shown[0]["text"]) == 100 and "truncated" in shown[-1]["text"]


def test_a_tool_result_a_strict_client_rejects_is_named_field_by_field() -> None:
    """What the official SDK clients validate of a CallToolResult: each problem said, the rest let be."""
    text = {"type": "text", "text": "t"}
    link = {"type": "resource_link", "uri": "f://a", "name": "a", "size": 3, "annotations": {"priority": 0.5}}
    embedded = {"type": "resource", "resource": {"uri": "f://a", "blob": "AA=="}}
    image = {"type": "image", "data": "AA==", "mimeType": "image/png", "_meta": {}}
    fine = {"content": [text, link, embedded, image], "structuredContent": {"a": 1}, "isError": False, "_meta": {}}
    assert tool_result_problem(fine, legacy=True) is None
    assert tool_result_problem({"resultType": "input_required", "inputRequests": {}}, legacy=False) is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "content is missing"),
        ({"content": "t"}, "content is not a list"),
        ({"content": ["t"]}, "content[0] is not an object"),
        ({"content": [text, {"text": "t"}]}, "content[1] has no type"),
        ({"content": [{"type": "video"}]}, "content[0] has the unknown type 'video'"),
        ({"content": [{"type": "text", "text": 5}]}, "content[0] (text) has no string text"),
        ({"content": [{"type": "audio", "data": "AA=="}]}, "content[0] (audio) has no string mimeType"),
        (
            {"content": [{"type": "resource_link", "uri": 1, "name": "a"}]},
            "content[0] (resource_link) has no string uri",
        ),
        ({"content": [{**link, "size": "big"}]}, "content[0] (resource_link): size is not an integer"),
        ({"content": [{**link, "name": None}]}, "content[0] (resource_link) has no string name"),
        (
            {"content": [{"type": "resource", "resource": "x"}]},
            "content[0] (resource) has no resource with a string uri",
        ),
        (
            {"content": [{"type": "resource", "resource": {"uri": "f://a", "text": 1}}]},
            "content[0] (resource) has neither a string text nor a string blob",
        ),
        ({"content": [{**text, "annotations": {"audience": ["bot"]}}]}, "content[0] has annotations of the wrong type"),
        ({"content": [{**text, "annotations": []}]}, "content[0] has annotations of the wrong type"),
        ({"content": [{**text, "_meta": 1}]}, "content[0] has a _meta that is not an object"),
        ({"content": [], "structuredContent": [1]}, "structuredContent is not an object"),
        ({"content": [], "isError": "yes"}, "isError is not a boolean"),
        ({"content": [], "_meta": []}, "_meta is not an object"),
    ]
    for result, problem in cases:
        assert tool_result_problem(result, legacy=True) == problem, result
    assert tool_result_problem({"content": [], "structuredContent": [1]}, legacy=False) is None  # 2026-07-28: any JSON


def test_a_prompt_a_strict_client_rejects_is_named_field_by_field() -> None:
    """What the official SDK clients validate of a GetPromptResult (both eras' wire types)."""
    user = {"role": "user", "content": {"type": "text", "text": "t"}}
    link = {"type": "resource_link", "uri": "f://a", "name": "a"}
    fine = {"description": "d", "messages": [user, {"role": "assistant", "content": link}], "_meta": {}}
    assert reply_problem("prompts/get", fine) is None
    assert reply_problem("prompts/get", {"resultType": "input_required", "inputRequests": {}}) is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "messages is missing"),
        ({"messages": {"role": "user"}}, "messages is not a list"),
        ({"messages": [user, "hi"]}, "messages[1] is not an object"),
        ({"messages": [{**user, "role": "system"}]}, "messages[0] has the role 'system', not 'user' or 'assistant'"),
        ({"messages": [{"content": user["content"]}]}, "messages[0] has no role, not 'user' or 'assistant'"),
        ({"messages": [{"role": "user"}]}, "messages[0].content is missing"),
        ({"messages": [{"role": "user", "content": "t"}]}, "messages[0].content is not an object"),
        ({"messages": [{"role": "user", "content": {"text": "t"}}]}, "messages[0].content has no type"),
        (
            {"messages": [{"role": "user", "content": {"type": "text", "text": 5}}]},
            "messages[0].content (text) has no string text",
        ),
        ({"messages": [], "description": 5}, "description is not a string"),
        ({"messages": [], "_meta": "m"}, "_meta is not an object"),
    ]
    for result, problem in cases:
        assert reply_problem("prompts/get", result) == problem, result


def test_a_read_resource_a_strict_client_rejects_is_named_field_by_field() -> None:
    """What the official SDK clients validate of a ReadResourceResult (both eras' wire types)."""
    text = {"uri": "f://a", "text": "t", "mimeType": "text/plain", "_meta": {}}
    blob = {"uri": "f://b", "blob": "AA=="}
    assert reply_problem("resources/read", {"contents": [text, blob], "_meta": {}}) is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "contents is missing"),
        ({"contents": text}, "contents is not a list"),
        ({"contents": [text, 5]}, "contents[1] is not an object"),
        ({"contents": [{"text": "t"}]}, "contents[0] has no string uri"),
        ({"contents": [{"uri": 5, "text": "t"}]}, "contents[0] has no string uri"),
        ({"contents": [{"uri": "f://a", "text": 5}]}, "contents[0] has neither a string text nor a string blob"),
        ({"contents": [{"uri": "f://a"}]}, "contents[0] has neither a string text nor a string blob"),
        ({"contents": [{**text, "mimeType": 3}]}, "contents[0] has a mimeType that is not a string"),
        ({"contents": [{**blob, "_meta": []}]}, "contents[0] has a _meta that is not an object"),
        ({"contents": [], "_meta": 1}, "_meta is not an object"),
    ]
    for result, problem in cases:
        assert reply_problem("resources/read", result) == problem, result
    assert reply_problem("tools/list", {"tools": 5}) is None  # not a reply it knows


def test_a_completion_a_strict_client_rejects_is_named_field_by_field() -> None:
    """What the official SDK clients validate of a CompleteResult (both eras' wire types), by JSON type."""
    fine = {"completion": {"values": ["a", "b"], "total": 2, "hasMore": False}, "_meta": {}}
    assert reply_problem("completion/complete", fine) is None
    assert reply_problem("completion/complete", {"completion": {"values": [], "total": None}}) is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "completion is missing"),
        ({"completion": ["a"]}, "completion is not an object"),
        ({"completion": {}}, "completion.values is missing"),
        ({"completion": {"values": "a"}}, "completion.values is not a list"),
        ({"completion": {"values": ["a", None]}}, "completion.values[1] is not a string"),
        ({"completion": {"values": [], "total": "3"}}, "completion.total is not an integer"),
        ({"completion": {"values": [], "total": 2.5}}, "completion.total is not an integer"),
        ({"completion": {"values": [], "total": True}}, "completion.total is not an integer"),
        ({"completion": {"values": [], "hasMore": 1}}, "completion.hasMore is not a boolean"),
        ({"completion": {"values": []}, "_meta": []}, "_meta is not an object"),
    ]
    for result, problem in cases:
        assert reply_problem("completion/complete", result) == problem, result


def test_a_completion_holds_at_most_100_values_and_says_there_are_more() -> None:
    values = [str(n) for n in range(101)]
    reply: Message = {"jsonrpc": "2.0", "id": 1, "result": {"completion": {"values": values, "total": 101}}}
    before = copy.deepcopy(reply)
    out = for_client(reply, "completion/complete", visible_uri=None, client_modern=False, upstream_modern=False)
    assert out["result"]["completion"] == {"values": values[:100], "total": 101, "hasMore": True}
    assert reply == before  # its argument untouched
    hundred: Message = {"jsonrpc": "2.0", "id": 1, "result": {"completion": {"values": values[:100]}}}
    same = for_client(hundred, "completion/complete", visible_uri=None, client_modern=False, upstream_modern=False)
    assert same["result"] == hundred["result"]


ELICIT = {"message": "m", "requestedSchema": {"type": "object", "properties": {}}}
SAMPLE = {"messages": [{"role": "user", "content": {"type": "text", "text": "w"}}], "maxTokens": 5}
INPUT_REQUESTS: list[tuple[dict[str, Any], str]] = [  # what the SDK client's embedded request types refuse
    ({"method": "elicitation/create"}, "is missing"),
    ({"method": "elicitation/create", "params": {**ELICIT, "message": 5}}, "has no string message"),
    ({"method": "elicitation/create", "params": {"message": "m"}}, "has no requestedSchema of type object"),
    (
        {"method": "elicitation/create", "params": {**ELICIT, "requestedSchema": {"type": "string"}}},
        "has no requestedSchema of type object",
    ),
    ({"method": "elicitation/create", "params": {"mode": "url", "message": "m"}}, "(url mode) has no string url"),
    ({"method": "sampling/createMessage", "params": {"maxTokens": 5}}, "has no messages list"),
    (
        {"method": "sampling/createMessage", "params": {**SAMPLE, "messages": [{"role": "system", "content": {}}]}},
        "messages[0] has no role 'user' or 'assistant'",
    ),
    (
        {"method": "sampling/createMessage", "params": {**SAMPLE, "messages": [{"role": "user"}]}},
        "messages[0] has no content",
    ),
    ({"method": "sampling/createMessage", "params": {**SAMPLE, "maxTokens": "5"}}, "has no integer maxTokens"),
]


def test_a_2026_envelope_a_strict_client_rejects_is_named() -> None:
    """What the SDK client's 2026-07-28 result types require of resultType and an InputRequiredResult."""
    ask = {"method": "roots/list", "params": {}}
    asking = {"resultType": "input_required", "inputRequests": {"a": ask}, "requestState": "s"}
    for fine in ({}, {"resultType": "complete"}, {"resultType": "an_extension's"}, asking):
        assert envelope_problem("tools/call", fine) is None, fine
    url = {"mode": "url", "message": "m", "url": "https://x.example"}
    tool_use = {**SAMPLE, "messages": [{"role": "assistant", "content": [{"type": "tool_use"}]}]}
    for method, params in (
        ("elicitation/create", ELICIT),
        ("elicitation/create", url),
        ("sampling/createMessage", SAMPLE),
    ):
        asked = {**asking, "inputRequests": {"a": {"method": method, "params": params}}}
        assert envelope_problem("tools/call", asked) is None, params
    asked = {**asking, "inputRequests": {"a": {"method": "sampling/createMessage", "params": tool_use}}}
    assert envelope_problem("tools/call", asked) is None  # its blocks are not judged here
    assert envelope_problem("prompts/get", {"resultType": "input_required"}) is None  # nothing asked, no state
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("tools/call", {"resultType": 5}, "resultType is not a string"),
        ("completion/complete", asking, "resultType is 'input_required', which completion/complete cannot answer"),
        ("resources/read", {**asking, "inputRequests": [ask]}, "inputRequests is not an object"),
        (
            "tools/call",
            {**asking, "inputRequests": {"a": {"method": "ping"}}},
            "inputRequests['a'] is not an elicitation/create, sampling/createMessage or roots/list request",
        ),
        (
            "tools/call",
            {**asking, "inputRequests": {"b": "roots/list"}},
            "inputRequests['b'] is not an elicitation/create, sampling/createMessage or roots/list request",
        ),
        (
            "tools/call",
            {**asking, "inputRequests": {"a": {**ask, "params": []}}},
            "inputRequests['a'].params is not an object",
        ),
        *[
            ("tools/call", {**asking, "inputRequests": {"a": request}}, f"inputRequests['a'].params {problem}")
            for request, problem in INPUT_REQUESTS
        ],
        ("prompts/get", {**asking, "requestState": 7}, "requestState is not a string"),
    ]
    for method, result, problem in cases:
        assert envelope_problem(method, result) == problem, result


def test_a_task_a_strict_client_rejects_is_named_field_by_field() -> None:
    """2025-11-25's Task: what a tasks/get or tasks/cancel result, a handle's task and a tasks/list entry must be."""
    when = "2026-11-21T00:00:00Z"
    task = {"taskId": "t", "status": "working", "createdAt": when, "lastUpdatedAt": when, "ttl": None}
    assert task_problem(task) is None
    assert task_problem({**task, "ttl": 60000, "pollInterval": 500, "statusMessage": "s"}) is None
    assert task_problem({**task, "taskId": "x" * 1024}) is None
    assert reply_problem("tasks/get", task) is None and reply_problem("tasks/cancel", {**task, "_meta": {}}) is None
    statuses = "'working', 'input_required', 'completed', 'failed' or 'cancelled'"
    cases: list[tuple[Any, str]] = [
        ({**task, "taskId": 5}, "taskId is not a string"),
        ({k: v for k, v in task.items() if k != "lastUpdatedAt"}, "lastUpdatedAt is not a string"),
        ({**task, "status": "running"}, f"status is 'running', not {statuses}"),
        ({k: v for k, v in task.items() if k != "status"}, f"status is missing, not {statuses}"),
        ({k: v for k, v in task.items() if k != "ttl"}, "ttl is missing (a number or null)"),
        ({**task, "ttl": "60s"}, "ttl is not a number or null"),
        ({**task, "ttl": True}, "ttl is not a number or null"),
        ({**task, "pollInterval": "1s"}, "pollInterval is not a number"),
        ({**task, "statusMessage": 3}, "statusMessage is not a string"),
        ({**task, "taskId": "x" * 1025}, "taskId is 1025 characters long, over the hub's 1024"),  # h7: kept
    ]
    for given, problem in cases:
        assert task_problem(given) == problem, given
    assert task_problem({**task, "ttl": "60s"}, "task.") == "task.ttl is not a number or null"
    assert task_problem("t", "task.") == "task is not an object"
    assert reply_problem("tasks/get", {**task, "_meta": 1}) == "_meta is not an object"


def test_a_result_type_that_is_not_a_string_does_not_spare_the_result_its_checks() -> None:
    """Only a result that asks for input (or an extension's) is not a plain result; a resultType 5 (a
    legacy server's slip, which a legacy client drops unread) left the rest of the result unchecked."""
    assert tool_result_problem({"resultType": 5, "content": "x"}, legacy=True) == "content is not a list"
    assert reply_problem("completion/complete", {"resultType": [], "completion": []}) == "completion is not an object"
    assert reply_problem("prompts/get", {"resultType": "input_required", "inputRequests": {}}) is None


def test_an_error_naming_the_asked_uri_only_in_its_message_names_the_uri_the_client_knows() -> None:
    """The TypeScript SDK says "Resource demo://x not found" with no data.uri: a client read back the URI
    the server knows, which the hub does not (server-everything, a read of ev+demo://nope/x)."""
    sdk: Message = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "Resource a://x not found"}}
    out = legacy_to_legacy(sdk, "resources/read", visible_uri=prefixed, asked_uri="a://x")
    assert out["error"] == {"code": -32602, "message": "Resource files+a://x not found"}
    said: Message = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "files+a://x: no"}}
    assert legacy_to_legacy(said, "resources/read", visible_uri=prefixed, asked_uri="a://x") == said  # once only
    assert legacy_to_legacy(sdk, "resources/read", visible_uri=None, asked_uri="a://x") == sdk  # unprefixed
