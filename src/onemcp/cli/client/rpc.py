"""A lean client for one running hub in the stateless 2026-07-28 era: one request is one POST.

Owns the wire of the agent commands: the modern request envelope (`Mcp-Method` / `Mcp-Name`
headers, `params._meta` with the protocol version and client capabilities), reading a JSON or
SSE reply up to its response, and `/health`. No handshake and no session, so `onemcp run` costs
one HTTP round trip. Stdlib only (`http1` below it, `json`): this module is on the path of every
`onemcp run`, where start-up time is the cost. Does not know what a tool is; `agent` does.

Errors::

    HubUnreachable   no connection, or an answer that is not MCP (the message says which)
    RpcError         the hub answered with a JSON-RPC error (code, message, data kept)
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from onemcp import __version__
from onemcp.cli.client.http1 import Connection, ConnectionRefused, HubHttpError, Response
from onemcp.protocol.errors import echo
from onemcp.protocol.headers import encode_header, is_plain
from onemcp.protocol.meta import PREFIX

VERSION = "2026-07-28"
INPUT_REQUIRED = "input_required"
METHOD_NOT_FOUND = -32601
TOKEN_ENV = "ONEMCP_TOKEN"  # a bearer token (an API key) for a hub that requires one


def token_problem() -> str | None:
    """Why $ONEMCP_TOKEN cannot be sent as a bearer token (None: it can, or it is not set): a line break
    would end the header, and a header carries no other text than ASCII."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    return f"${TOKEN_ENV} holds characters an HTTP header cannot carry" if token and not is_plain(token) else None


class HubUnreachable(Exception):
    """The hub cannot be reached, or did not answer like an MCP server (`kind` "auth": it refused the
    token, or wants one)."""

    def __init__(self, message: str, kind: str = "unreachable") -> None:
        super().__init__(message)
        self.kind = kind


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class HubClient:
    """Requests to one hub endpoint over one keep-alive connection."""

    def __init__(
        self, url: str, *, timeout: float = 300.0, context: Callable[[], dict[str, str]] | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HubUnreachable(f"not an http(s) URL: {url!r}")
        self.url = url
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        tls = parts.scheme == "https"
        self._conn = Connection(parts.hostname, parts.port or (443 if tls else 80), tls=tls, timeout=timeout)
        self._ids = itertools.count(1)
        if (problem := token_problem()) is not None:
            raise HubUnreachable(problem, "auth")
        token = os.environ.get(TOKEN_ENV, "").strip()
        self._auth = {"authorization": f"Bearer {token}"} if token else {}
        self._context = context  # the signed template context headers, made afresh per request

    def close(self) -> None:
        self._conn.close()

    def request(
        self, method: str, params: dict[str, Any] | None = None, *, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The result of `method`; RpcError for an error reply, HubUnreachable for no reply."""
        if not is_plain(method):  # no Mcp-Method header can carry it (as the proxy answers it)
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {echo(repr(method))}")
        rid = next(self._ids)
        body = dict(params or {})
        body["_meta"] = {
            **(body.get("_meta") or {}),
            PREFIX + "protocolVersion": VERSION,
            PREFIX + "clientCapabilities": {},
            PREFIX + "clientInfo": {"name": "onemcp-cli", "version": __version__},
        }
        sent = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": VERSION,
            "mcp-method": method,
        }
        name = body.get("uri") if method == "resources/read" else body.get("name")
        if method in ("tools/call", "prompts/get", "resources/read") and isinstance(name, str):
            sent["mcp-name"] = encode_header(name)
        sent.update(self._auth)
        if self._context is not None:
            sent.update(self._context())
        sent.update(headers or {})
        payload = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": body}).encode()
        reply = self._exchange("POST", self.path, payload, sent, rid)
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise RpcError(-32603, f"malformed error reply: {error!r}")
            raise RpcError(int(error.get("code", -32603)), str(error.get("message", "")), error.get("data"))
        result = reply.get("result")
        if not isinstance(result, dict):
            raise HubUnreachable(f"{self.url}: the reply has no result object")
        if result.get("resultType") == INPUT_REQUIRED:
            raise RpcError(-32603, "the tool asked for input from the client (sampling, elicitation or roots), "
                           "which the command line cannot give; use an MCP client for this tool")  # fmt: skip
        return result

    def health(self) -> dict[str, Any]:
        """The hub's `/health` document (beside the MCP endpoint)."""
        return self.get_json("/health")

    def get_json(self, where: str) -> dict[str, Any]:
        """The JSON object a GET of `where` (`/health`, `/api/v1/tools?...`: beside the MCP endpoint) answers;
        HubUnreachable when it is not a 200 with a JSON object."""
        path = self.path.split("?", 1)[0].rstrip("/")
        for endpoint in ("/mcp", "/sse"):
            path = path.removesuffix(endpoint)
        response = self._send("GET", f"{path}{where}", None, {"accept": "application/json", **self._auth})
        try:
            data = response.read()
        except HubHttpError as exc:
            raise HubUnreachable(f"{self.origin}{path}{where}: {exc}") from None
        if response.status != 200:
            raise HubUnreachable(f"{self.origin}{path}{where} answered HTTP {response.status}")
        doc = _json(data, f"{self.origin}{path}{where}")
        if not isinstance(doc, dict):
            raise HubUnreachable(f"{self.origin}{path}{where} did not answer a JSON object")
        return doc

    # ------------------------------------------------------------------ wire
    def _send(self, verb: str, path: str, body: bytes | None, headers: dict[str, str]) -> Response:
        try:
            return self._conn.request(verb, path, headers, body)
        except ConnectionRefused as exc:
            raise HubUnreachable(f"no hub answers at {self.url}: {exc}") from None
        except HubHttpError as exc:
            raise HubUnreachable(f"{self.url}: {exc}") from None

    def _exchange(self, verb: str, path: str, body: bytes, headers: dict[str, str], rid: int) -> dict[str, Any]:
        response = self._send(verb, path, body, headers)
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype == "text/event-stream":
                return self._from_stream(response, rid)
            data = response.read()
        except HubHttpError as exc:
            raise HubUnreachable(f"{self.url}: the reply broke off: {exc}") from None
        if response.status == 401:
            if self._auth:
                said = f"refused ${TOKEN_ENV} (HTTP 401: not a key it knows, or one revoked or expired)"
            else:
                said = f"requires a token: set {TOKEN_ENV} to an API key (`onemcp auth key create` makes one)"
            raise HubUnreachable(f"the hub at {self.url} {said}", "auth")
        doc = _json(data, self.url) if ctype == "application/json" else None
        if isinstance(doc, dict) and doc.get("id") == rid and ("result" in doc or "error" in doc):
            return doc
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):  # an error before the id was read
            return doc
        text = data.decode(errors="replace").strip()[:200]
        raise HubUnreachable(f"{self.url} answered HTTP {response.status} {ctype or '(no type)'}: {text}")

    def _from_stream(self, response: Response, rid: int) -> dict[str, Any]:
        """Read SSE events until the response to `rid` (progress and logs are skipped)."""
        data: list[str] = []
        for raw in response.lines():
            line = raw.decode("utf-8", errors="replace")
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
                continue
            if line or not data:
                continue
            doc = _json("\n".join(data).encode(), self.url)
            data = []
            if isinstance(doc, dict) and doc.get("id") == rid and ("result" in doc or "error" in doc):
                return doc  # the rest of the stream is of no use (the connection will not be reused)
        raise HubUnreachable(f"{self.url}: the reply stream ended without a response")


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise HubUnreachable(f"{where}: the answer is not JSON") from None
