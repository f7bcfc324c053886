"""API clients: the calling systems, identified by hashed API keys with scopes."""
