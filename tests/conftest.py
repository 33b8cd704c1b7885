import os

import pytest
from hypothesis import settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# CI runs the property tests on a fixed sequence of examples (still thousands of them), so that a
# landing is not decided by a lucky draw; locally each run explores new ones.
if os.environ.get("CI"):
    settings.register_profile("ci", derandomize=True, print_blob=True)
    settings.load_profile("ci")
