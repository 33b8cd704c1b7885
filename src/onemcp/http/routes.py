"""The hub's own HTTP routes that more than one layer names (vocabulary only)."""

from __future__ import annotations

# the hub's OAuth with its upstreams: the list/logout endpoints, and where authorization servers redirect back
UPSTREAM_OAUTH = "/oauth/upstream"
UPSTREAM_OAUTH_CALLBACK = UPSTREAM_OAUTH + "/callback"
UPSTREAM_OAUTH_START = UPSTREAM_OAUTH + "/start"  # a user signs in here to authorize their own credential
