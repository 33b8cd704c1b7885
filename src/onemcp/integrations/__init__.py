"""Other tools' config files (clients' MCP configs, JSONC): reading, importing and redirecting them."""
