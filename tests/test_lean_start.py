"""What a hub loads at start: the heavy optional libraries wait until a feature needs them (idle RSS, issue 18)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("httpx", "jwt", "cryptography", "jinja2", "redis", "numpy", "onnxruntime", "quicktok")


def test_the_app_loads_none_of_the_heavy_optional_libraries() -> None:
    code = (
        "import sys, onemcp.app, onemcp.cli.serve\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "", f"loaded at import: {done.stdout.strip()}"
