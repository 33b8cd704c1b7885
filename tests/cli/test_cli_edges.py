"""The command line's edges, as a user or an agent meets them: numbers JSON cannot hold, a malformed hub
URL or `.onemcprc`, a hub that wants a token, Ctrl-C, a stdout that is not UTF-8, no terminal."""

from __future__ import annotations

import pytest

from onemcp.cli.main import main


# ---------------------------------------------------------------------- --args that are not JSON
@pytest.mark.parametrize(
    ("args", "word"),
    [
        ('{"a": NaN, "b": 1}', "NaN"),
        ('{"a": Infinity}', "Infinity"),
        ('{"a": -Infinity}', "-Infinity"),
        ('{"a": 1e999}', "1e999"),
        ('{"a": [1, {"b": -1e400}]}', "-1e400"),
    ],
)
def test_non_finite_numbers_in_args_are_not_json(capsys: pytest.CaptureFixture[str], args: str, word: str) -> None:
    """Python's json reads NaN, Infinity and 1e999 (as inf); JSON has none of them: exit 2 before any hub."""
    assert main(["run", "demo/add", "--args", args, "--url", "http://127.0.0.1:9/mcp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("onemcp: the arguments (--args) are not valid JSON: ") and word in err
    assert err.count("\n") == 1
