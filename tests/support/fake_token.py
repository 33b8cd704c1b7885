"""The hub's own token for an upstream, as the upstream transports ask it, renewed at once when refused.

Boundary: test support for hand-written upstreams that answer 401 (tests/support/raw_server.py)."""

from __future__ import annotations


class Token:
    """The hub's own token for the server, renewed at once when it is refused."""

    header = "Bearer t"
    tokens = object()

    def authorization(self, method: str, url: str) -> dict[str, str]:
        return {"authorization": self.header}

    async def ensure_fresh(self) -> None:
        pass

    async def recover(self, status: int, challenge: str | None, used: str | None, nonce: str | None) -> bool:
        return True

    def explain(self) -> str:
        return "refused"
