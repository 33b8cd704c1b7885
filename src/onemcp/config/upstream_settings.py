"""The parts of an upstream's mcp.json entry that are objects of their own: `oauth`, `probe`, `sandbox`.

Owns their validation only (what each takes, and what would go unused as written); the entry itself
(`ServerConfig`) and how it is loaded live in `model` and `load`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from onemcp.config import values
from onemcp.config.base import StrictModel as _Model


class UpstreamOAuth(_Model):
    """How the hub authorizes itself with an OAuth-protected upstream (the hub is the client)."""

    # A client registered with the upstream's authorization server beforehand; without it the
    # hub registers itself dynamically (RFC 7591) when the server offers that.
    client_id: str | None = Field(None, alias="clientId")
    client_secret: str | None = Field(None, alias="clientSecret")
    # An https URL serving this hub's Client ID Metadata Document: used as the client_id with
    # servers that accept such documents (before dynamic registration is tried).
    client_metadata_url: str | None = Field(None, alias="clientMetadataUrl")
    # The authorization server a configured clientSecret / privateKey belongs to; without it, the
    # first one seen is remembered, and a server that later names another is refused.
    issuer: str | None = None
    auth_method: Literal["client_secret_basic", "client_secret_post", "none", "private_key_jwt"] | None = Field(
        None, alias="authMethod"
    )
    scopes: list[str] | None = None  # default: what the server's challenge or metadata asks for
    # "client_credentials": the hub is a machine client (no person, no browser): it gets its tokens
    # itself with clientId and clientSecret, or with a JWT signed by privateKey (private_key_jwt).
    grant: Literal["authorization_code", "client_credentials"] = "authorization_code"
    private_key: str | None = Field(None, alias="privateKey")  # PEM, e.g. "${UPSTREAM_KEY}"
    signing_algorithm: Literal["ES256", "RS256", "PS256", "EdDSA"] = Field("ES256", alias="signingAlgorithm")
    # DPoP-bound tokens (RFC 9449) when the authorization server offers them; false: Bearer only
    dpop: bool = True
    # Each principal authorizes the hub with the upstream once, for itself: its calls carry its own
    # tokens on a connection of its own. The hub's own authorization (the operator's) lists tools.
    per_user: bool = Field(False, alias="perUser")

    @model_validator(mode="after")
    def _machine_needs_credentials(self) -> UpstreamOAuth:
        if self.grant == "client_credentials" and not (self.client_id and (self.client_secret or self.private_key)):
            raise ValueError("grant 'client_credentials' needs clientId and clientSecret or privateKey")
        if self.per_user and self.grant == "client_credentials":
            raise ValueError("'perUser' needs people who authorize (grant authorization_code), not a machine client")
        if problem := self._unused():
            raise ValueError(problem)
        return self

    def _unused(self) -> str | None:
        """A setting the hub would never use as written (what would silently not happen), or None."""
        method, machine = self.auth_method, self.grant == "client_credentials"
        if self.client_id is None and (self.client_secret or method):
            key = "clientSecret" if self.client_secret else "authMethod"
            return f"'{key}' belongs to a registered client: give its 'clientId' too (without one, the hub registers)"
        if self.client_id is not None and self.client_metadata_url is not None:
            return "'clientMetadataUrl' is a client id of its own: give it or 'clientId', not both"
        cimd = self.client_metadata_url
        if cimd is not None and (not cimd.startswith("https://") or values.url_problem(cimd)):
            return "'clientMetadataUrl' must be an https URL (it is the client id authorization servers fetch)"
        if self.private_key and not machine:
            return "'privateKey' signs a machine client's assertions: it needs 'grant': 'client_credentials'"
        if method == "private_key_jwt" and not self.private_key:
            return "authMethod 'private_key_jwt' needs a 'privateKey' (PEM) to sign with"
        if self.private_key and method not in (None, "private_key_jwt"):
            return f"'privateKey' is used with authMethod 'private_key_jwt', not {method!r}"
        if self.signing_algorithm != "ES256" and not self.private_key:
            return "'signingAlgorithm' applies to a 'privateKey'"
        if method in ("client_secret_basic", "client_secret_post") and not self.client_secret:
            return f"authMethod {method!r} needs a 'clientSecret'"
        if method == "none" and self.client_secret:
            return "authMethod 'none' sends no secret: remove 'clientSecret', or choose how it is sent"
        return None


class Probe(_Model):
    """Active health checks of an HTTP server's URLs: GET `path` on each; out after `unhealthyThreshold`
    failures in a row, back after `healthyThreshold` successes."""

    path: str = Field("/", pattern=r"^/")  # on the URL's origin; any answer below 500 counts as up
    interval: float = Field(5.0, gt=0, le=3600)
    timeout: float = Field(2.0, gt=0, le=300)
    healthy_threshold: int = Field(2, alias="healthyThreshold", ge=1, le=100)
    unhealthy_threshold: int = Field(3, alias="unhealthyThreshold", ge=1, le=100)


class Sandbox(_Model):
    """Limits and isolation for a stdio server (upstream/sandbox.py); over a limit it is stopped, not restarted."""

    memory_mb: int | None = Field(None, alias="memoryMB", gt=0)  # resident memory of it and its children
    cpu_seconds: int | None = Field(None, alias="cpuSeconds", gt=0)  # CPU time of the process (RLIMIT_CPU)
    open_files: int | None = Field(None, alias="openFiles", gt=0)  # RLIMIT_NOFILE
    processes: int | None = Field(None, gt=0)  # processes it may have (itself included)
    user: str | None = None  # run as this user (the hub must be root)
    # bubblewrap: read-only filesystem but for cwd, `writable` and a private /tmp; `network: false` cuts it off
    isolate: bool = False
    network: bool = True
    writable: list[str] = []

    @model_validator(mode="after")
    def _isolation_ok(self) -> Sandbox:
        if not self.isolate and (not self.network or self.writable):
            raise ValueError("'network' and 'writable' apply with 'isolate': true (bubblewrap)")
        return self
