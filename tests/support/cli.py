"""The CLI run in this process, as its commands' tests call it: exit code, stdout and stderr, never a traceback."""

from __future__ import annotations

import pytest

from onemcp.cli.main import main


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err
