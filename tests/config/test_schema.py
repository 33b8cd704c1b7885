"""The config's JSON Schema: generated from the model, shipped current, served, and strict about typos."""

from __future__ import annotations

import json

import anyio
import httpx
import jsonschema
import pytest

from onemcp.cli.main import main
from onemcp.config import schema
from onemcp.config.load import ConfigError, parse_config
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


SERVER = {"command": "x"}


@pytest.mark.parametrize(
    ("doc", "taken"),
    [
        ({"mcpServers": {"a": {**SERVER, "autoApprove": ["t"], "alwaysAllow": []}}}, True),  # other clients' keys
        ({"servers": {"a": SERVER}, "inputs": [{"id": "k"}]}, True),  # VS Code's
        ({"mcpServers": {"a": {**SERVER, "env": ["A=1", "B=2"]}}}, True),  # 1MCP's env list
        ({"serverDefaults": {}, "mcpServers": {"a": {**SERVER, "requestTimeout": 30000}}}, True),
        ({"mcpServers": {"a": {**SERVER, "restartOnExit": True}}}, True),
        ({"mcpServers": {"a": {**SERVER, "timeout": "${T}", "disabled": "${F:-false}"}}}, True),  # strings: ${VAR}
        ({"mcpServers": {"a": {**SERVER, "timeout": "30"}}}, False),  # a number in quotes by hand
        ({"mcpServers": {"a": {**SERVER, "disabled": "false"}}}, False),
        ({"mcpServers": {"a": {**SERVER, "timeout": 7200}}}, False),  # over an hour (the schema said valid)
        ({"mcpServers": {"a": {**SERVER, "restartOnExit": False}}}, False),
        ({"mcpServers": {"a": {**SERVER, "env": {"A": 1}}}}, False),
        ({"mcpServers": {"a": {"comand": "x"}}}, False),
        ({"mcpServers": {}, "servers": {}}, False),
        # what the loader refused and the schema took (an editor showed these as fine)
        ({"mcpServers": {"a b": SERVER}}, False),  # a server name: letters, digits, '_' and '-'
        ({"servers": {"a.b": SERVER}}, False),
        ({"mcpTemplates": {"t/x": SERVER}}, False),
        ({"mcpServers": {"a" * 33: SERVER}}, False),
        ({"mcpServers": {"a": {"command": "x", "url": "http://h/mcp"}}}, False),  # both transports
        ({"mcpServers": {"a": {"args": ["x"]}}}, False),  # neither
        ({"mcpServers": {"a": {"command": " "}}}, False),  # no program
        ({"mcpTemplates": {"t": {"url": "http://h/mcp", "command": "x"}}}, False),
        ({"mcpServers": {"a-1_B": {"url": "http://h/mcp", "command": None}}}, True),  # null: left out
        ({"mcpTemplates": {"t": {"command": "{{ project.path }}/run"}}}, True),
        ({"mcpServers": {"a": {"url": "ftp://h/mcp"}}}, False),
        ({"mcpServers": {"a": {"url": "${U}", "replicas": ["https://b/mcp"]}}}, True),
        ({"mcpServers": {"a": {"url": "http://h/mcp", "replicas": ["h2/mcp"]}}}, False),
        ({"mcpServers": {"a": {**SERVER, "replicas": 0}}}, False),
        ({"mcpServers": {"a": {**SERVER, "replicas": 65}}}, False),
        ({"mcpServers": {"a": {**SERVER, "env": {"A=B": "c"}}}}, False),
        ({"mcpServers": {"a": {**SERVER, "env": {"${K}": "v"}}}}, True),  # a name, not substituted
        ({"mcpServers": {"a": {"url": "http://h/mcp", "headers": {"a b": "c"}}}}, False),
        ({"mcpServers": {"a": {"url": "http://h/mcp", "headers": {"X-Key": "${K}"}}}}, True),
        ({"mcpServers": {"a": {**SERVER, "type": "sse"}}}, False),  # an HTTP type with a command
        ({"mcpServers": {"a": {"url": "http://h/mcp", "type": "stdio"}}}, False),
        ({"mcpServers": {"a": {"url": "http://h/mcp", "type": "streamable-http"}}}, True),
        ({"mcpServers": {"a": {**SERVER, "type": "stdio"}}}, True),
    ],
)
def test_the_schema_and_the_loader_agree(doc: dict[str, object], taken: bool) -> None:
    """An editor following `$schema` flags what the hub refuses and nothing it takes (it used to flag
    other clients' keys, VS Code's servers and inputs, 1MCP's forms and strings for numbers)."""
    try:
        parse_config(json.dumps(doc).encode(), source="mcp.json", env={"T": "30", "U": "http://h/mcp", "K": "k"})
        loaded = True
    except ConfigError:
        loaded = False
    assert loaded is taken
    assert jsonschema.Draft202012Validator(schema.generate()).is_valid(doc) is taken
