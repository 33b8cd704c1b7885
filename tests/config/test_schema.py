"""The config's JSON Schema: generated from the model, shipped current, served, and strict about typos."""

from __future__ import annotations

import json

import anyio
import httpx
import jsonschema
import pytest

from onemcp.cli.main import main
from onemcp.config import schema
from support.hub import running_hub


def test_the_shipped_schema_is_current_and_catches_typos(capsys: pytest.CaptureFixture[str]) -> None:
    regenerate = "onemcp config schema > src/onemcp/config/mcp.schema.json"
    assert schema.SCHEMA_FILE.read_text() == schema.text(), regenerate
    code = main(["config", "schema"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["title"] == "onemcp mcp.json"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"mcpServers": {"a": {"comand": "x"}}}, schema.generate())


@pytest.mark.anyio
async def test_the_hub_serves_it() -> None:
    with anyio.fail_after(30):
        async with running_hub({"mcpServers": {}}) as hub, httpx.AsyncClient() as http:
            r = await http.get(f"{hub.base}{schema.SERVED_PATH}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/schema+json"
    assert json.loads(r.content) == schema.generate()
