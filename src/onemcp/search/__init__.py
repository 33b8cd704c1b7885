"""Tool search: ranking a catalog's tools for a plain-language request, and counting tokens."""
