"""Durable storage: the one source of truth that catch-up reads from."""
