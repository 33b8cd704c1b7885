"""The built-in OAuth 2.1 authorization server: its app, authorization, clients, grants, consent and store."""
