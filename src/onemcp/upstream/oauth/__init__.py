"""The hub as an OAuth client of protected upstreams: discovery, registration, flows, DPoP, token storage."""
