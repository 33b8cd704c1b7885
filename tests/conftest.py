import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from onemcp.config import redis_link
from support.services import redis_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _trusted_redis() -> Iterator[None]:
    """Each test starts with no Redis breaker open (they are per URL, and a test's port may come again)."""
    yield
    redis_link.forget_breakers()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (stopped by its PID): its URL."""
    with redis_server() as url:
        yield url


# CI runs the property tests on a fixed sequence of examples (still thousands of them), so that a
# landing is not decided by a lucky draw; locally each run explores new ones.
if os.environ.get("CI"):
    settings.register_profile("ci", derandomize=True, print_blob=True)
    settings.load_profile("ci")
