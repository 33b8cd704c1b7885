"""`onemcp validate` and `onemcp config init|schema`, run in-process against real files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import jsonschema
import pytest

from onemcp.cli.configure import TEMPLATES
from onemcp.config import formats, schema
from onemcp.config.load import load_config
from support.cli import cli


def test_validate_reports_every_problem_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "a": {"comand": "x"},
                    "b": {"command": "surely-not-installed-onemcp"},
                    "c": {"url": "http://[::1"},
                    "d": {"command": "x", "env": {"T": "${NOT_SET_ONE}", "U": "${NOT_SET_TWO}"}},
                }
            }
        )
    )
    code, out, _ = cli(capsys, "validate", str(path))
    assert code == 1
    assert "mcpServers.a.comand: unknown key 'comand'; did you mean 'command'?" in out
    assert "mcpServers.b.command: 'surely-not-installed-onemcp' is not installed" in out
    assert "mcpServers.c.url" in out
    assert "${NOT_SET_ONE}" in out and "${NOT_SET_TWO}" in out
    code, out, _ = cli(capsys, "validate", str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["valid"] is False and len(report["problems"]) >= 5


def test_validate_a_good_file_and_a_missing_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mcp.yaml"
    path.write_text("mcpServers:\n  py:\n    command: python3\n")
    code, out, _ = cli(capsys, "validate", str(path))
    assert (code, out.strip()) == (0, f"{path}: valid (1 server(s), 0 template(s))")
    code, _, err = cli(capsys, "validate", str(tmp_path / "nope.json"))
    assert code == 2 and "cannot read" in err


def test_validate_a_file_and_another_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`validate a.json --config b.json` checked a.json and said nothing of b.json: which was meant?"""
    good, other = tmp_path / "a.json", tmp_path / "b.json"
    good.write_text('{"mcpServers": {}}')
    code, out, err = cli(capsys, "validate", str(good), "--config", str(other))
    assert code == 2 and not out
    assert f"onemcp: validate {good} and --config {other} name two files: give one" in err
    assert cli(capsys, "validate", str(good), "--config", str(good))[0] == 0  # the same file twice: one


def test_validate_checks_the_presets_beside_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The hub reads presets.json beside mcp.json: `validate` said "valid" over one it refuses (clients
    then got "unknown preset")."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"py": {"command": "python3"}}}))
    presets = tmp_path / "presets.json"
    presets.write_text(json.dumps({"presets": {"dev": {"filter": "dev", "exposure": "search"}}}))
    assert cli(capsys, "validate", str(path))[0] == 0
    presets.write_text(json.dumps({"presets": {"dev": {"filter": "dev", "exposure": "SEARCH"}}}))
    code, out, _ = cli(capsys, "validate", str(path))
    assert code == 1 and f"{presets}: presets.dev.exposure: must be one of" in out, out


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_init_templates_load_and_match_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], template: str
) -> None:
    path = tmp_path / "cfg" / "mcp.json"
    code, out, _ = cli(capsys, "config", "--config", str(path), "init", "--template", template)
    assert code == 0 and "wrote" in out
    assert "//" in path.read_text()  # commented
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # owner-only, as every config onemcp writes (was 0644)
    config = load_config(path)
    assert "time" in config.servers
    doc = formats.parse(path.read_bytes())
    jsonschema.validate(doc, schema.generate())
    assert doc["$schema"] == schema.uri()
    code, _, err = cli(capsys, "config", "--config", str(path), "init")
    assert code == 2 and "--force" in err


def test_init_force_keeps_the_config_it_replaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`config init --force` over a hand-written config replaced it with nothing kept (every other edit keeps
    the file it replaces in backups/)."""
    path = tmp_path / "mcp.json"
    mine = '{"mcpServers": {"mine": {"command": "x"}}}  // weeks of work\n'
    path.write_text(mine)
    code, out, _ = cli(capsys, "config", "--config", str(path), "init", "--force")
    assert code == 0 and "time" in load_config(path).servers
    (kept,) = (tmp_path / "backups").iterdir()
    assert kept.read_text() == mine and f"the config it replaced is saved as {kept}" in out


def test_init_takes_config_after_the_action_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "after" / "mcp.json"
    code, out, _ = cli(capsys, "config", "init", "--config", str(path))
    assert code == 0 and str(path) in out and load_config(path).servers


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`onemcp config schema | head -1`: the reader is gone before the command writes a byte."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "onemcp", "config", "schema"], stdout=write_end, stderr=subprocess.PIPE
    )
    os.close(write_end)
    os.close(read_end)  # the command takes far longer to start than this
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=30) == 0 and "Error" not in err, err
