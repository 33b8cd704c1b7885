"""The JSON Schema of the config, made from the model, shipped in the package, named by `$schema`.

Owns generating the schema (`HubConfig`'s, with `$schema` allowed at the top and what `compat` maps
before validation, so the editor and the loader agree), the shipped copy
(`mcp.schema.json` beside this module: a test keeps it equal to the generated one) and the URI
written configs name so editors complete and check them. The hub also serves it at
`/schema/mcp.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onemcp.config.compat import FOREIGN_SERVER_KEYS
from onemcp.config.model import HubConfig

SCHEMA_FILE = Path(__file__).with_name("mcp.schema.json")
SERVED_PATH = "/schema/mcp.json"


# A string where a number or a boolean belongs: a ${VAR} (substitution makes every value a string, and the
# loader reads the variable's "60" or "true" as the number or boolean, its range then the loader's to
# check). A number or boolean written in quotes by hand ("60") is refused, so the schema wants a variable.
AS_STRING = {"type": "string", "pattern": r"\$\{?[A-Za-z_]", "description": "a ${VAR} holding the value"}
MS = {"type": "number", "exclusiveMinimum": 0, "description": "1MCP's, in milliseconds (converted)"}
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"  # a server's or template's name (`protocol.names.server_name_problem`)
URL_PATTERN = r"^(https?://|\$)"  # http(s), or a ${VAR} that holds one (the loader checks it substituted)
HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # an HTTP token (`values.header_problem`); keys are not substituted
HTTP_TYPES = ["http", "streamable-http", "streamableHttp", "sse"]


def generate() -> dict[str, Any]:
    """The model's schema, with what the loader also takes before validating (`compat`): VS Code's `servers`
    and `inputs`, other clients' own keys in an entry, 1MCP's settings and `["K=V"]` env lists, ${VAR}s for
    numbers and booleans. So an editor flags what the hub refuses, and no config the hub takes."""
    doc: dict[str, Any] = _lenient(HubConfig.model_json_schema(by_alias=True, mode="validation"))
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "onemcp mcp.json"
    top = doc.setdefault("properties", {})
    for names in ("mcpServers", "mcpTemplates"):  # the separator's rules (not inside, not at an end) are the loader's
        top[names]["propertyNames"] = {"pattern": NAME_PATTERN, "description": "letters, digits, '_' and '-'"}
    top["$schema"] = {"type": "string", "description": "this schema, for editors"}
    top["servers"] = {**top["mcpServers"], "title": "Servers", "description": "VS Code's name for mcpServers"}
    top["inputs"] = {"type": "array", "description": "VS Code's prompts for values (not used by onemcp)"}
    top["serverDefaults"] = {"type": "object", "description": "1MCP's settings for every server"}
    doc["not"] = {"required": ["mcpServers", "servers"]}  # one or the other
    for entry in (doc["$defs"]["ServerConfig"], doc["$defs"]["ServerTemplate"]):
        fields = entry["properties"]
        fields.update({key: {"description": "another client's own key (ignored)"} for key in FOREIGN_SERVER_KEYS})
        fields.update({"requestTimeout": MS, "connectionTimeout": MS})
        fields["command"]["pattern"] = r"\S"  # an empty program is refused
        fields["url"]["pattern"] = URL_PATTERN
        fields["headers"]["propertyNames"] = {"pattern": HEADER_NAME}
        fields["env"]["propertyNames"] = {"pattern": "^[^=\u0000]+$"}  # (before `listed` joins it below)
        urls, count = fields["replicas"]["anyOf"][0], fields["replicas"]["anyOf"][1]["anyOf"][0]
        urls["items"]["pattern"] = URL_PATTERN
        count.update(minimum=1, maximum=64)
        entry["anyOf"] = [_given("command"), _given("url")]  # a stdio or an HTTP server: one of the two
        entry["not"] = _given("command", "url")
        entry["allOf"] = [  # `type` says which, and must agree
            {"if": _typed(HTTP_TYPES), "then": _given("url")},
            {"if": _typed(["stdio"]), "then": {"not": _given("url")}},
        ]
        fields["restartOnExit"] = {"const": True, "description": "1MCP's; onemcp always restarts (false is refused)"}
        fields["inheritParentEnv"] = {"const": False, "description": "1MCP's; true is refused: pass variables in env"}
        listed = {"type": "array", "items": {"type": "string", "pattern": "="}, "description": '["NAME=value", ...]'}
        fields["env"] = {"anyOf": [fields["env"], listed]}
    return doc


def _given(*keys: str) -> dict[str, Any]:
    """Matches an entry where each of `keys` is a string (a `null` one counts as left out, as the loader reads it)."""
    return {"required": list(keys), "properties": {key: {"type": "string"} for key in keys}}


def _typed(types: list[str]) -> dict[str, Any]:
    """Matches an entry whose `type` is one of `types`."""
    return {"required": ["type"], "properties": {"type": {"enum": types}}}


def _lenient(node: Any) -> Any:
    """`node` with every number or boolean also taking a string (`AS_STRING`)."""
    if isinstance(node, list):
        return [_lenient(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _lenient(value) for key, value in node.items()}
    if node.get("type") in ("number", "integer", "boolean"):
        kept = {key: node.pop(key) for key in ("title", "description", "default") if key in node}
        return {**kept, "anyOf": [node, AS_STRING]}
    return node


def text() -> str:
    return json.dumps(generate(), indent=2, sort_keys=True) + "\n"


def uri() -> str:
    """What a written config's `$schema` says: the installed copy of the schema."""
    return SCHEMA_FILE.resolve().as_uri()
