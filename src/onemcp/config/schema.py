"""The JSON Schema of the config, made from the model, shipped in the package, named by `$schema`.

Owns generating the schema (`HubConfig`'s, with `$schema` allowed at the top), the shipped copy
(`mcp.schema.json` beside this module: a test keeps it equal to the generated one) and the URI
written configs name so editors complete and check them. The hub also serves it at
`/schema/mcp.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onemcp.config.model import HubConfig

SCHEMA_FILE = Path(__file__).with_name("mcp.schema.json")
SERVED_PATH = "/schema/mcp.json"


def generate() -> dict[str, Any]:
    doc = HubConfig.model_json_schema(by_alias=True, mode="validation")
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "onemcp mcp.json"
    doc.setdefault("properties", {})["$schema"] = {"type": "string", "description": "this schema, for editors"}
    return doc


def text() -> str:
    return json.dumps(generate(), indent=2, sort_keys=True) + "\n"


def uri() -> str:
    """What a written config's `$schema` says: the installed copy of the schema."""
    return SCHEMA_FILE.resolve().as_uri()
