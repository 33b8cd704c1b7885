"""Roles: named bundles of scopes, with inheritance, turned into plain scopes where a credential is admitted.

Owns the expansion of `onemcp.auth.roles` (each role's own scopes and those of every role it
inherits, computed once) and the rewriting of a verified principal: each `role:<name>` scope it
holds (an API key made with `--role`, a JWT's `rolesClaim` values) and each role its OAuth client
is given (`clientRoles`) is replaced by that role's scopes. Everything after the gate (views,
`auth.access`, the operator surfaces) sees scopes only, so a role grants exactly what its scopes
would. A role the config no longer defines grants nothing (and is audited). Does not verify
credentials (`auth/keys.py`, `auth/jwt.py`, the OAuth server) or decide access (`auth/access.py`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from onemcp.auth.principal import Principal
from onemcp.config.auth_settings import Role

audit = logging.getLogger("onemcp.audit")
PREFIX = "role:"


def expand(roles: Mapping[str, Role]) -> dict[str, frozenset[str]]:
    """Each role's scopes, its inherited roles' included (the config refuses unknown parents and cycles)."""
    out: dict[str, frozenset[str]] = {}

    def scopes(name: str, path: tuple[str, ...]) -> frozenset[str]:
        if name in out:
            return out[name]
        role = roles[name]
        found = set(role.scopes)
        for parent in role.inherits:
            if parent not in path:
                found |= scopes(parent, (*path, parent))
        out[name] = frozenset(found)
        return out[name]

    for name in roles:
        scopes(name, (name,))
    return out


class Roles:
    def __init__(self, roles: Mapping[str, Role], client_roles: Mapping[str, list[str]]) -> None:
        self.scopes = expand(roles)
        self.client_roles = {client: tuple(names) for client, names in client_roles.items()}

    def __bool__(self) -> bool:
        return bool(self.scopes)

    def resolve(self, principal: Principal) -> Principal:
        """`principal` with its roles replaced by their scopes (unchanged when it holds none)."""
        named = [s[len(PREFIX) :] for s in principal.scopes if s.startswith(PREFIX)]
        if principal.kind == "oauth":
            named += self.client_roles.get(principal.labels.get("client_id", ""), ())
        if not named:
            return principal
        granted = {s for s in principal.scopes if not s.startswith(PREFIX)}
        for name in named:
            scopes = self.scopes.get(name)
            if scopes is None:
                audit.info("auth role unknown principal=%s role=%s (grants nothing)", principal.id, name)
                continue
            granted |= scopes
        return dataclasses.replace(principal, scopes=frozenset(granted))
